"""From raw model outputs of one expression on one window to masks: query choice, cropping of the
input padding, upsampling to the original frame size. These are the original inference scripts'
operations, in their order (``inference_ytvos.py``): the sigmoid class scores are averaged over
time, the max over classes gives each query's score, the best query is used for every frame; its
stride-4 mask logits are bilinearly resized to the original H x W, then the sigmoid is taken.
"""
import math
from dataclasses import dataclass, field, replace
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F


def best_query(logits: torch.Tensor) -> int:
    """logits [t, Q, K] -> the query with the highest time-averaged sigmoid score (max over classes)."""
    max_scores, _ = logits.sigmoid().mean(0).max(-1)
    _, index = max_scores.max(-1)
    return int(index)


def best_video_query(window_logits: Sequence[torch.Tensor]) -> int:
    """The best query over several windows: the per-frame scores of all windows are averaged together
    (the whole-video choice of ``best_query`` on the concatenated frames)."""
    return best_query(torch.cat([logits.float().cpu() for logits in window_logits], dim=0))


@dataclass
class ExpressionOutput:
    """The model outputs of one expression on one window of t frames.

    logits: class logits [t, Q, K]; masks: mask logits [t, Q, h4, w4] at stride 4 of the padded input;
    input_size: (h, w) of the resized frames before padding; padded_size: (H, W) of the model input;
    orig_size: (H0, W0) of the original frames; query: the query chosen for the whole video, or None
    (then the window chooses its own with ``best_query``); extras: other per-expression outputs of the
    model kept for a ``rescore_video`` hook (see ``InferenceEngine``).
    """

    logits: torch.Tensor
    masks: torch.Tensor
    input_size: Tuple[int, int]
    padded_size: Tuple[int, int]
    orig_size: Tuple[int, int]
    query: Optional[int] = None
    extras: Dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return self.logits.shape[0]

    def to(self, device) -> "ExpressionOutput":
        return replace(self, logits=self.logits.to(device), masks=self.masks.to(device),
                       extras={k: v.to(device) for k, v in self.extras.items()})

    def chosen_query(self) -> int:
        return self.query if self.query is not None else best_query(self.logits)

    def frame_scores(self) -> torch.Tensor:
        """[t] sigmoid score of the chosen query in each frame (max over classes)."""
        return self.logits[:, self.chosen_query()].sigmoid().max(-1).values

    def chosen_mask_logits(self) -> torch.Tensor:
        """[t, h', w'] stride-4 mask logits of the chosen query, the padding cropped off (h' = ceil(h / 4)
        when the input was padded; the whole map otherwise)."""
        masks = self.masks[:, self.chosen_query()]
        (h, w), (ph, pw) = self.input_size, self.padded_size
        if (h, w) != (ph, pw):
            mh, mw = masks.shape[-2:]
            masks = masks[:, :math.ceil(h * mh / ph), :math.ceil(w * mw / pw)]
        return masks

    def probabilities(self) -> torch.Tensor:
        """[t, H0, W0] foreground probabilities of the chosen query at the original frame size."""
        masks = self.chosen_mask_logits().float().unsqueeze(0)
        masks = F.interpolate(masks, size=tuple(self.orig_size), mode="bilinear", align_corners=False)
        return masks.sigmoid()[0]

    def binary_masks(self, threshold: float) -> np.ndarray:
        """bool [t, H0, W0]: ``probabilities() > threshold`` on the CPU (the PNGs of every binary benchmark)."""
        return (self.probabilities() > threshold).cpu().numpy()

    def soft_masks(self) -> torch.Tensor:
        """[t, h', w'] probabilities of the chosen query at stride 4 of the resized input (``--save_logits``)."""
        return self.chosen_mask_logits().float().sigmoid()
