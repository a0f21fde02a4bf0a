"""Prompt frames of TFVOS training (jsjei/TF2 ``datasets/ytvos.py``): every sampled frame gets a neighbour of it
with everything outside the referred object's ground-truth mask set to zero.

Rule: for the frame at position t of a video's L annotated frames, the prompt is the frame at t - 1 when t is the
last frame, else t + 1 when t is even, else t - 1 (a one-frame video: the frame itself, as the original's
``frames[-1]``). The prompt is the RGB frame multiplied by the object's binary mask in that frame (exact: pixel
or zero), made at the original resolution before any transform.

Transforms: by default the prompts go through the SAME random transform as their clip (one draw for clip and
prompts: same flip, resize and crop). TFVOS QUIRK: the original transforms the prompt clip with a separate call,
so its flip / resize / crop are drawn independently of the clip's; ``independent=True``
(``--tfvos_independent_prompt_transform``) reproduces that.
"""
from dataclasses import dataclass
from typing import List

import numpy as np
from PIL import Image
from torch.utils.data import ConcatDataset, Dataset

from rvos.models.variants import get_variant


def prompt_position(position: int, length: int) -> int:
    """The prompt frame's position for the frame at ``position`` of ``length`` frames (module docstring)."""
    if not 0 <= position < length:
        raise ValueError(f"frame position {position} is outside a video of {length} frames")
    if position == length - 1:
        return max(position - 1, 0)
    return position + 1 if position % 2 == 0 else position - 1


def masked_frame(frame: Image.Image, mask: np.ndarray) -> Image.Image:
    """RGB ``frame`` with every pixel outside ``mask`` [H, W] bool set to zero."""
    pixels = np.asarray(frame.convert("RGB"))
    if mask.shape != pixels.shape[:2]:
        raise ValueError(f"mask of {mask.shape[1]}x{mask.shape[0]} (WxH) for a frame of {frame.width}x{frame.height}")
    return Image.fromarray(np.where(mask[..., None], pixels, 0).astype(np.uint8))


@dataclass(frozen=True)
class PromptFrames:
    """How a dataset makes prompt frames: ``independent`` draws their transform apart from the clip's."""

    independent: bool = False


def uses_prompt_frames(args) -> bool:
    """Whether the ``--model`` variant trains on samples with prompt frames (TFVOS)."""
    return get_variant(getattr(args, "model", None) or "referformer").prompt_frames


def enable_prompt_frames(dataset: Dataset, name: str, independent: bool) -> None:
    """Make ``dataset`` (or every part of a concatenation) give each sample its prompt clip; a dataset without a
    mask in every frame (RefCOCO pseudo-videos, A2D / JHMDB) is an error naming it."""
    parts: List[Dataset] = list(dataset.datasets) if isinstance(dataset, ConcatDataset) else [dataset]
    for part in parts:
        if not hasattr(part, "prompt_frames"):
            raise ValueError(f"--model {name} trains with prompt frames (a neighbour masked by the ground truth), "
                             f"which needs a mask in every frame: {type(part).__name__} has none; use "
                             "--dataset_file ytvos, davis or mevis")
        part.prompt_frames = PromptFrames(independent)
