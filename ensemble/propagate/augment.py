"""Propagation from a key frame as the ensemble runs it: the I23 empty-key-mask fallback and test-time augmentation.

Rules (ICCV-2023 ``YOUTUBEVOS_Postprocess_Test`` / ``bidirectional_evaluator.py``):
- FALLBACK: a key mask with no pixel above 0.5 is not propagated; the source's own probabilities are returned
  unchanged.
- TTA ``{"scales": [s, ...], "flip": bool}``: the propagator runs on every scale (frames and key mask resized to
  round(s * H) x round(s * W), bilinear) and, with ``flip``, on each scale's horizontal mirror too; each result is
  mirrored back and resized to H x W (bilinear) and the probabilities are averaged. The I23 setting is scales
  (0.8, 1.0, 1.2) with flip. The key frame keeps its own mask.
"""
from typing import List, Mapping, Optional, Tuple

import cv2
import numpy as np

from rvos.ensemble.propagate.base import Propagator, check_inputs

TTA_OPTIONS = ("scales", "flip")


def _augmentations(tta: Optional[Mapping]) -> List[Tuple[float, bool]]:
    """(scale, flip) pairs of a TTA spec; None: the identity only. A bad spec is a ValueError naming the option."""
    if tta is None:
        return [(1.0, False)]
    unknown = sorted(set(tta) - set(TTA_OPTIONS))
    if unknown:
        raise ValueError(f"tta: unknown option(s) {', '.join(map(repr, unknown))}; accepted: {', '.join(TTA_OPTIONS)}")
    scales = tta.get("scales", [1.0])
    if isinstance(scales, (str, bytes)) or not hasattr(scales, "__iter__"):
        raise ValueError(f"tta: scales must be a list of positive numbers, got {scales!r}")
    scales = list(scales)
    if not scales or not all(isinstance(s, (int, float)) and not isinstance(s, bool) and s > 0 for s in scales):
        raise ValueError(f"tta: scales must be a non-empty list of positive numbers, got {scales!r}")
    flip = tta.get("flip", False)
    if not isinstance(flip, bool):
        raise ValueError(f"tta: flip must be true or false, got {flip!r}")
    return [(float(scale), mirrored) for scale in scales for mirrored in ((False, True) if flip else (False,))]


def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    if image.shape[:2] == (height, width):
        return image
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)


def _augmented_run(propagator: Propagator, frames: np.ndarray, key_index: int, key_mask: np.ndarray,
                   scale: float, flip: bool, text: Optional[str]) -> np.ndarray:
    """The propagator's [T, H, W] probabilities on the video resized by ``scale`` (and mirrored), mapped back."""
    height, width = frames.shape[1:3]
    scaled = (max(1, round(height * scale)), max(1, round(width * scale)))
    video = np.stack([_resize(frame, *scaled) for frame in frames])
    mask = np.clip(_resize(key_mask, *scaled), 0.0, 1.0)
    if flip:
        video, mask = video[:, :, ::-1], mask[:, ::-1]
    out = propagator.propagate(np.ascontiguousarray(video), key_index, np.ascontiguousarray(mask), text)
    if flip:
        out = out[:, :, ::-1]
    return np.stack([_resize(np.ascontiguousarray(frame), height, width) for frame in out])


def propagate_from_key_frame(propagator: Propagator, frames: np.ndarray, key_index: int, key_mask: np.ndarray,
                             source_probs: np.ndarray, tta: Optional[Mapping] = None,
                             text: Optional[str] = None) -> np.ndarray:
    """frames uint8 [T, H, W, 3]; key_index; key_mask float32 [H, W] (the source's key-frame probabilities);
    source_probs float32 [T, H, W] (the source's probabilities, returned unchanged when the key mask is empty);
    text: the expression, for a propagator that ``needs_text`` (TFVOS).

    Returns float32 [T, H, W]: the (TTA-averaged) propagation with ``out[key_index] == key_mask``, or
    ``source_probs`` when no key-mask pixel is above 0.5 (the I23 fallback). A TTA spec for a propagator without
    ``supports_tta`` is a ValueError.
    """
    frames, key_index, key_mask = check_inputs(frames, key_index, key_mask)
    source_probs = np.asarray(source_probs, dtype=np.float32)
    if source_probs.shape != frames.shape[:3]:
        raise ValueError(f"source_probs is {source_probs.shape} but the frames are {frames.shape[:3]} (T, H, W)")
    augmentations = _augmentations(tta)
    if tta is not None and not propagator.supports_tta:
        raise ValueError(f"propagator {propagator.name!r} does not support test-time augmentation (tta)")
    if propagator.needs_text and not (isinstance(text, str) and text.strip()):
        raise ValueError(f"propagator {propagator.name!r} needs the expression: pass text=...")
    if not np.any(key_mask > 0.5):
        return source_probs
    total = np.zeros(frames.shape[:3], dtype=np.float64)
    for scale, flip in augmentations:
        total += _augmented_run(propagator, frames, key_index, key_mask, scale, flip, text)
    out = (total / len(augmentations)).astype(np.float32)
    out[key_index] = key_mask
    return out
