"""Lazy loading of the compiled MultiScaleDeformableAttention extension.

Order: the ahead-of-time build ``models/ops/_msda*.so`` (``pip install -e . --no-build-isolation`` or
``python setup.py build_ext --inplace``); else, when ``RVOS_MSDA_JIT=1``, the JIT build of ``rvos.models.ops.build``
(compiled on first use).  Nothing is imported until a caller asks, so importing ``models.ops`` never needs a
compiler, a GPU or a build.
"""
import importlib
import os
from typing import Optional

PREBUILT_MODULE = f"{__package__}._msda"  # build.AOT_MODULE_NAME (build.py is imported only for JIT builds)
JIT_ENV_VAR = "RVOS_MSDA_JIT"
BUILD_HINT = (
    "Build it with `pip install -e . --no-build-isolation` (or `python setup.py build_ext --inplace`), or "
    "JIT-compile it with `python -m rvos.models.ops.build` / RVOS_MSDA_JIT=1; set TORCH_CUDA_ARCH_LIST (e.g. 9.0) "
    "and CUDA_HOME when needed.  `python -m rvos.models.ops.check` reports the result."
)

_module = None
_load_error: Optional[str] = None
_attempted = False


def _load():
    global _module, _load_error, _attempted
    _attempted = True
    try:
        _module = importlib.import_module(PREBUILT_MODULE)
        return
    except ModuleNotFoundError as error:
        if error.name != PREBUILT_MODULE:
            _load_error = f"the prebuilt extension failed to import: {error}"
            return
        _load_error = "the extension is not built"
    except ImportError as error:  # e.g. undefined symbol: built against another torch / CUDA
        _load_error = f"the prebuilt extension failed to import (stale build? rebuild it): {error}"
        return
    if os.environ.get(JIT_ENV_VAR, "0") == "1":
        from . import build

        try:
            _module = build.load_jit()
            _load_error = None
        except Exception as error:  # compiler / toolkit problems: report and fall back
            _load_error = f"JIT compilation ({JIT_ENV_VAR}=1) failed: {error}"


def get_extension():
    """The compiled module (functions ``forward``, ``backward``, ``build_info``, ...) or None if unavailable."""
    if not _attempted:
        _load()
    return _module


def is_extension_available() -> bool:
    return get_extension() is not None


def extension_unavailable_reason() -> Optional[str]:
    """Why ``get_extension()`` is None, with the build instructions; None when the extension is loaded."""
    if get_extension() is not None:
        return None
    return f"{_load_error}. {BUILD_HINT}"
