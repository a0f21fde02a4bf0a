"""Reading pickles of plain data (the RefCOCO ``refs(*).p`` files) without running anything they ask for.

``pickle.load`` calls whatever callable a pickle names, so a hostile file runs its payload. A pickle of
plain data needs no callable: lists, dicts, tuples, strings, bytes, numbers, booleans and None have their
own opcodes. ``load_plain_pickle`` admits those, plus the few builtin constructors that older protocols
use for plain containers (``set``, ``frozenset``, ``bytearray``, and ``_codecs.encode`` with which
protocols 0-2 spell ``bytes``); any other global is refused before it is looked up.
"""
import codecs
import pickle
from pathlib import Path
from typing import Any

# (module, name) -> the object; Python 2 pickles name ``__builtin__``, mapped to ``builtins`` by fix_imports.
PLAIN_GLOBALS = {
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "bytearray"): bytearray,
    ("_codecs", "encode"): codecs.encode,
}


# What a pickle of numpy arrays needs besides plain data (detectron2 ``.pkl`` weights files); numpy 1 and 2 names.
ARRAY_GLOBALS = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
                 ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
                 ("numpy._core.multiarray", "scalar"), ("collections", "OrderedDict")}


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle that should hold plain data asks to call or build something else."""


class _PlainUnpickler(pickle.Unpickler):
    def __init__(self, handle, source: str, allow_arrays: bool, encoding: str):
        super().__init__(handle, encoding=encoding)
        self.source = source
        self.allow_arrays = allow_arrays

    def find_class(self, module: str, name: str):
        key = ("builtins" if module == "__builtin__" else module, name)
        if key in PLAIN_GLOBALS:
            return PLAIN_GLOBALS[key]
        if self.allow_arrays and key in ARRAY_GLOBALS:
            return super().find_class(module, name)
        raise UnsafePickleError(f"{self.source}: the pickle asks for {module}.{name}; only lists, dicts, tuples, "
                                "sets, strings, bytes and numbers are accepted (refused without loading it: it "
                                "could run code)")

    def persistent_load(self, pid):
        raise UnsafePickleError(f"{self.source}: the pickle refers to an external object ({pid!r}); only plain data "
                                "is accepted")


def load_plain_pickle(path: Path, allow_arrays: bool = False, encoding: str = "ASCII") -> Any:
    """The plain data (builtin containers and scalars; numpy arrays too with ``allow_arrays``) pickled in ``path``.

    Raises UnsafePickleError naming the file and the global it asked for when the pickle holds anything
    else, and ``pickle.UnpicklingError`` naming the file when it is truncated or corrupt.
    """
    path = Path(path)
    with open(path, "rb") as handle:
        try:
            return _PlainUnpickler(handle, str(path), allow_arrays, encoding).load()
        except UnsafePickleError:
            raise
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError,
                AttributeError, MemoryError, UnicodeDecodeError) as error:
            raise pickle.UnpicklingError(f"{path}: not a readable pickle (truncated or corrupt): "
                                         f"{type(error).__name__}: {error}") from error
