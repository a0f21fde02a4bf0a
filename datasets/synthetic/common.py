"""Helpers shared by the benchmark writers: building a video and writing its frames and masks."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from .formats import write_binary_png, write_jpeg, write_palette_png
from .scenes import SceneBuilder
from .world import Video


def make_video(name: str, rng: np.random.Generator, size: tuple[int, int], num_frames: int, recipe: str,
               num_objects: int, shape_sizes: Sequence[str] = ("small", "big"), **build_options) -> Video:
    """Build a :class:`Video` from a scene recipe (see :mod:`datasets.synthetic.scenes`).

    ``shape_sizes`` are the size words shapes may have; ``build_options`` go to
    :meth:`SceneBuilder.build` (``static``, ``leaving``, ``crossing``, ``separation``).
    """
    height, width = size
    objects = SceneBuilder(rng, height, width, num_frames, shape_sizes).build(recipe, num_objects, **build_options)
    return Video(name, height, width, num_frames, objects, render_seed=int(rng.integers(2 ** 63)))


def pick_num_frames(rng: np.random.Generator, min_frames: int, max_frames: int) -> int:
    return int(rng.integers(min_frames, max_frames + 1))


def write_jpeg_frames(folder: Path, video: Video, names: Sequence[str]) -> None:
    """``<folder>/<name>.jpg`` for every frame."""
    for t, name in enumerate(names):
        write_jpeg(Path(folder) / f"{name}.jpg", video.frames[t])


def write_palette_annotations(folder: Path, video: Video, names: Sequence[str]) -> None:
    """``<folder>/<name>.png``: palette PNGs of the visible object ids, one per frame."""
    for t, name in enumerate(names):
        write_palette_png(Path(folder) / f"{name}.png", video.label_maps[t])


def write_binary_masks(folder: Path, masks: np.ndarray, names: Sequence[str]) -> None:
    """``<folder>/<name>.png``: {0, 255} PNGs of a [T, H, W] mask stack (held-out ground truth)."""
    for t, name in enumerate(names):
        write_binary_png(Path(folder) / f"{name}.png", masks[t])


def union_of(masks: np.ndarray, video: Video, obj_ids: Sequence[int]) -> np.ndarray:
    """[T, H, W] union of the given objects' masks from an [N, T, H, W] stack of ``video``."""
    union = np.zeros(masks.shape[1:], dtype=bool)
    for obj_id in obj_ids:
        union |= masks[video.index_of(obj_id)]
    return union
