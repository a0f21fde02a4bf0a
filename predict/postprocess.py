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
    model kept for a ``rescore_video`` hook (see ``InferenceEngine``); union: the queries whose masks are OR-ed
    (a model that outputs zero, one or several objects, DsHmp on MeViS; None: the chosen query alone);
    via_padded: upsample the stride-4 logits to the padded input size, crop the padding, then resize to the
    original size (Mask2Former / DsHmp), instead of cropping at stride 4 and resizing once (ReferFormer).
    """

    logits: torch.Tensor
    masks: torch.Tensor
    input_size: Tuple[int, int]
    padded_size: Tuple[int, int]
    orig_size: Tuple[int, int]
    query: Optional[int] = None
    extras: Dict[str, torch.Tensor] = field(default_factory=dict)
    union: Optional[Tuple[int, ...]] = None
    via_padded: bool = False

    @property
    def num_frames(self) -> int:
        return self.logits.shape[0]

    def to(self, device) -> "ExpressionOutput":
        return replace(self, logits=self.logits.to(device), masks=self.masks.to(device),
                       extras={k: v.to(device) for k, v in self.extras.items()})

    def chosen_query(self) -> int:
        return self.query if self.query is not None else best_query(self.logits)

    def output_queries(self) -> Tuple[int, ...]:
        """The queries making up the output mask (possibly none)."""
        return (self.chosen_query(),) if self.union is None else tuple(self.union)

    def frame_scores(self) -> torch.Tensor:
        """[t] sigmoid score of the chosen query in each frame (max over classes)."""
        return self.logits[:, self.chosen_query()].sigmoid().max(-1).values

    def crop_stride4(self, masks: torch.Tensor) -> torch.Tensor:
        """Stride-4 logits [..., h4, w4] with the padding cropped off (h' = ceil(h / 4) when the input was padded;
        the whole map otherwise)."""
        (h, w), (ph, pw) = self.input_size, self.padded_size
        if (h, w) != (ph, pw):
            mh, mw = masks.shape[-2:]
            masks = masks[..., :math.ceil(h * mh / ph), :math.ceil(w * mw / pw)]
        return masks

    def chosen_mask_logits(self) -> torch.Tensor:
        """[t, h', w'] stride-4 mask logits of the chosen query, the padding cropped off."""
        return self.crop_stride4(self.masks[:, self.chosen_query()])

    def probabilities(self) -> torch.Tensor:
        """[t, H0, W0] foreground probabilities at the original frame size: of the chosen query, or the maximum over
        the ``union`` queries (zero when it is empty)."""
        queries = self.output_queries()
        if not queries:
            return self.masks.new_zeros((self.num_frames, *self.orig_size), dtype=torch.float32)
        masks = self.masks[:, list(queries)].float().transpose(0, 1)  # [k, t, h4, w4]
        if self.via_padded:
            masks = F.interpolate(masks, size=tuple(self.padded_size), mode="bilinear", align_corners=False)
            masks = masks[..., :self.input_size[0], :self.input_size[1]]
        else:
            masks = self.crop_stride4(masks)
        masks = F.interpolate(masks, size=tuple(self.orig_size), mode="bilinear", align_corners=False)
        return masks.sigmoid().amax(0)

    def binary_masks(self, threshold: float) -> np.ndarray:
        """bool [t, H0, W0]: ``probabilities() > threshold`` on the CPU (the PNGs of every binary benchmark)."""
        return (self.probabilities() > threshold).cpu().numpy()

    def soft_masks(self) -> torch.Tensor:
        """[t, h', w'] probabilities at stride 4 of the resized input (``--save_logits``): of the chosen query, or the
        maximum over the ``union`` queries (zero when it is empty)."""
        queries = self.output_queries()
        masks = self.crop_stride4(self.masks).float()
        if not queries:
            return masks.new_zeros((masks.shape[0], *masks.shape[-2:]))
        return masks[:, list(queries)].sigmoid().amax(1)
