"""The synthetic world: moving 2-D shapes written in every benchmark's real on-disk layout.

Use :func:`make_dataset` (or ``tools/make_synthetic_data.py``) to write a miniature copy of
Ref-YouTube-VOS, Ref-DAVIS17, MeViS, A2D-Sentences, JHMDB-Sentences or RefCOCO, or a single mp4
for the custom-video path. ``docs/SYNTHETIC.md`` describes the world, the layouts, the held-out
ground truth and the ``synthetic_meta.json`` sidecar.
"""
from __future__ import annotations

import importlib
import logging
from pathlib import Path

from .config import DATASET_NAMES, resolve_sizes
from .sidecar import HELD_OUT_DIR, SIDECAR_NAME

__all__ = ["DATASET_NAMES", "HELD_OUT_DIR", "SIDECAR_NAME", "make_dataset"]

logger = logging.getLogger(__name__)


def make_dataset(name: str, root: Path, seed: int = 0, **sizes) -> Path:
    """Write synthetic dataset ``name`` under ``root`` and return the dataset root.

    ``name`` is one of ``ytvos``, ``davis``, ``mevis``, ``a2d``, ``jhmdb``, ``refcoco`` or
    ``video``; ``sizes`` are the options of :func:`datasets.synthetic.config.resolve_sizes`
    (``num_videos``, ``num_<split>_videos``, ``num_images``, ``num_frames``, ``min_frames``,
    ``height``, ``width``). The same arguments always give byte-identical files.
    """
    resolved = resolve_sizes(name, **sizes)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    writer = importlib.import_module(f"{__name__}.{name}")
    logger.info("writing synthetic %s (seed %d) under %s", name, seed, root)
    return writer.write(root, seed, resolved)
