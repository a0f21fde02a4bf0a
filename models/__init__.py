"""Model construction: ``model, criterion, postprocessors = build_model(args)``."""
from .build import build_model, load_text_encoder_weights, resolve_model_name

__all__ = ["build_model", "load_text_encoder_weights", "resolve_model_name"]
