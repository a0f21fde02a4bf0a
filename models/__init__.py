"""Model construction: ``model, criterion, postprocessors = build_model(args)``.

Imported lazily, so ``python -m rvos.models.ops.check`` and other light tools do not load the whole stack.
"""

__all__ = ["build_model", "load_text_encoder_weights", "resolve_model_name"]


def __getattr__(name):
    if name in __all__:
        from . import build
        return getattr(build, name)
    raise AttributeError(f"module 'rvos.models' has no attribute {name!r}")
