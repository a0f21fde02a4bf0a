"""The import package of the project.

The checkout keeps the shape of the original repositories (``main.py``, ``inference.py``, ``opts.py``,
``engine.py``, ``models/``, ``datasets/``, ``util/`` ... at the root, run from the checkout), and every one of
those folders and modules is imported through this package: ``rvos.models``, ``rvos.datasets``, ``rvos.opts``.
So the project claims no generic top-level name (``import datasets`` stays Hugging Face's), in the checkout and
when installed with ``pip install -e .``. See docs/ARCHITECTURE.md for the packages and their layers.

``from rvos import Predictor`` is the Python API (``predict/api.py``), imported on first use so that
``import rvos`` stays light.
"""
from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parent.parent
if not (_CHECKOUT / "models" / "__init__.py").is_file():
    raise ImportError(f"rvos is imported from {_CHECKOUT}, which is not a checkout of the project: install it from "
                      "a clone with `pip install -e .` (the project runs from its checkout)")
__path__.append(str(_CHECKOUT))

__version__ = "0.2.0"

_LAZY = {"Predictor": "rvos.predict.api", "Prediction": "rvos.predict.prediction"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'rvos' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
