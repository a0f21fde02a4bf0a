"""The propagator interface: a key frame's mask carried through a video, forward to the end and backward to 0."""
from abc import ABC, abstractmethod
from typing import Optional, Tuple

import numpy as np


def check_inputs(frames: np.ndarray, key_index: int, key_mask: np.ndarray) -> Tuple[np.ndarray, int, np.ndarray]:
    """The validated inputs of ``Propagator.propagate``: frames uint8 [T, H, W, 3], an int key index in
    [0, T), key_mask float32 [H, W] in [0, 1]. A wrong shape, dtype or range is a ValueError saying which."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
        raise ValueError(f"frames must be a uint8 array [T, H, W, 3] with T >= 1, got shape {frames.shape}")
    if frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 RGB, got {frames.dtype}")
    if isinstance(key_index, bool) or not isinstance(key_index, (int, np.integer)):
        raise ValueError(f"key_index must be an int, got {type(key_index).__name__}")
    if not 0 <= key_index < frames.shape[0]:
        raise ValueError(f"key_index {key_index} is outside the video's {frames.shape[0]} frames")
    key_mask = np.asarray(key_mask, dtype=np.float32)
    if key_mask.shape != frames.shape[1:3]:
        raise ValueError(f"key_mask is {key_mask.shape} (H, W) but the frames are {frames.shape[1:3]}")
    if not np.all((key_mask >= 0) & (key_mask <= 1)):
        raise ValueError("key_mask must hold probabilities in [0, 1] (apply a sigmoid to logits first)")
    return np.ascontiguousarray(frames), int(key_index), np.ascontiguousarray(key_mask)


class Propagator(ABC):
    """Carries a key frame's mask through a video.

    Subclasses set ``name`` (the spec ``type``), ``supports_tta`` (whether ``propagate_from_key_frame`` may run
    them on resized / flipped copies of the video) and ``needs_text`` (a referring model that must be given the
    expression), and implement ``_propagate`` on validated inputs.
    """

    name: str = ""
    supports_tta: bool = False
    needs_text: bool = False

    def propagate(self, frames: np.ndarray, key_index: int, key_mask: np.ndarray,
                  text: Optional[str] = None) -> np.ndarray:
        """frames: uint8 RGB [T, H, W, 3] in time order; key_index: the key frame; key_mask: its foreground
        probabilities float32 [H, W] in [0, 1]; text: the expression (required when ``needs_text``, else unused).

        Returns float32 [T, H, W] foreground probabilities: frames key_index + 1 .. T - 1 propagated forward from
        the key frame, frames key_index - 1 .. 0 backward from it, and ``out[key_index] == key_mask``.
        """
        frames, key_index, key_mask = check_inputs(frames, key_index, key_mask)
        if self.needs_text and not (isinstance(text, str) and text.strip()):
            raise ValueError(f"propagator {self.name!r} needs the expression: pass text=...")
        out = np.asarray(self._propagate(frames, key_index, key_mask, text), dtype=np.float32)
        if out.shape != frames.shape[:3]:
            raise RuntimeError(f"propagator {self.name!r} returned shape {out.shape}, expected {frames.shape[:3]}")
        out[key_index] = key_mask
        return np.clip(out, 0.0, 1.0)

    @abstractmethod
    def _propagate(self, frames: np.ndarray, key_index: int, key_mask: np.ndarray, text: Optional[str]) -> np.ndarray:
        """``propagate`` on validated inputs; returns [T, H, W] probabilities (frame key_index is overwritten)."""
