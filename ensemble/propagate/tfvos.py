"""TFVOS as a mask-prompted propagator: ``predict.keyframe.propagate`` behind the propagator interface.

TFVOS segments one frame at a time prompted by the previous frame with everything outside its mask set to zero,
and by the expression: so it takes a mask prompt (through the masked prompt frame) but it is a referring model and
needs the expression's text as well (``needs_text``; ``propagate(..., text=...)``). The key mask is binarised at
0.5 (the prompt is a masked frame), forward and backward run from the key frame, every other frame predicted
(the corrected path: not the original's skipped first neighbours, whose masks would have to come from the source).

No test-time augmentation: a mirrored frame changes what "left" / "right" in an expression refer to, and the model
resizes every frame to its own short side, so scales only resample the input.
"""
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np

from rvos.ensemble.propagate.base import Propagator


class TfvosPropagator(Propagator):
    """Spec ``{"type": "tfvos", "checkpoint": .pth file or converted folder, "device": "auto" | "cpu" | "cuda",
    "amp": null | "fp16" | "bf16", "short_side": int, "max_size": int, "model_options": {...}}``.

    ``model_options`` are ``Predictor.from_pretrained``'s keyword options (named as ``inference.py``'s: e.g.
    ``text_encoder``, or the architecture of a legacy checkpoint); ``model`` is set to ``tfvos`` (a ReferFormer
    checkpoint has the same parameters). short_side / max_size: the inference resize (default: the model's).
    """

    name = "tfvos"
    supports_tta = False
    needs_text = True

    def __init__(self, checkpoint: str, device: str = "auto", amp: Optional[str] = None,
                 short_side: Optional[int] = None, max_size: Optional[int] = None,
                 model_options: Optional[Dict[str, Any]] = None):
        self.checkpoint = Path(checkpoint)
        if not self.checkpoint.exists():
            raise ValueError(f"tfvos: checkpoint {self.checkpoint} does not exist")
        if model_options is not None and not isinstance(model_options, dict):
            raise ValueError(f"tfvos: model_options must be a mapping of inference.py options, got {model_options!r}")
        own = sorted(set(model_options or {}) & {"device", "amp", "short_side", "max_size"})
        if own:
            raise ValueError(f"tfvos: {', '.join(map(repr, own))} in model_options: give them as the spec's own "
                             "options")
        if (model_options or {}).get("model", "tfvos") != "tfvos":
            raise ValueError(f"tfvos: model_options sets model {model_options['model']!r}; the propagator is TFVOS")
        self.device = device
        self.amp = amp
        self.short_side = short_side
        self.max_size = max_size
        self.model_options = dict(model_options or {}, model="tfvos")
        self._predictor = None

    def predictor(self):
        """The TFVOS ``Predictor`` (model in eval mode, resize), loaded strictly on first call."""
        if self._predictor is None:
            from rvos.predict.api import Predictor

            device = None if self.device == "auto" else self.device
            self._predictor = Predictor.from_pretrained(self.checkpoint, device=device, amp=self.amp,
                                                        short_side=self.short_side, max_size=self.max_size,
                                                        **self.model_options)
        return self._predictor

    def __getstate__(self):
        """Pickled (for worker processes) without the model; each process loads its own."""
        return {**self.__dict__, "_predictor": None}

    def _propagate(self, frames: np.ndarray, key_index: int, key_mask: np.ndarray, text: Optional[str]) -> np.ndarray:
        from rvos.predict.keyframe import propagate

        predictor = self.predictor()
        probabilities = propagate(predictor.model, list(frames), key_index, key_mask > 0.5, text,
                                  device=predictor.device, short_side=predictor.short_side,
                                  max_size=predictor.max_size, amp=self.amp)
        return probabilities.numpy()
