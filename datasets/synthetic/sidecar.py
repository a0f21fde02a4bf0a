"""The sidecar file ``<root>/synthetic_meta.json``: what the generator put in a dataset.

Schema (``format_version`` 1)::

    {
      "format_version": 1,
      "generator": "datasets.synthetic",
      "dataset": "ytvos" | "davis" | "mevis" | "a2d" | "jhmdb" | "refcoco" | "video",
      "seed": int,
      "sizes": {"videos": {split: count}, "min_frames", "max_frames", "frame_sizes": [[H, W], ...]},
      "kinds": ["appearance", "motion", "position", "multi"],
      "held_out_ground_truth": {split: "<folder relative to the root>"},
      "videos": {split: {video: {"height", "width", "num_frames", "frames": [names],
                                 "objects": {obj_id: {"shape", "colour", "size", "direction",
                                                      "speed", "radius", "start", "depth"}}}}},
      "expressions": [{"split", "video", "exp_id", "exp", "kind", "needs_motion", "objects": [...]}]
    }

``docs/SYNTHETIC.md`` says, per dataset, what ``video``, ``exp_id`` and ``objects`` hold.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

from .formats import write_json
from .language import KINDS, Expression
from .world import Video

SIDECAR_NAME = "synthetic_meta.json"
HELD_OUT_DIR = "_synthetic_gt"
FORMAT_VERSION = 1


class Sidecar:
    """Collects videos and expressions while a dataset is written, then writes the json."""

    def __init__(self, dataset: str, seed: int, sizes: dict):
        self.payload: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "generator": "datasets.synthetic",
            "dataset": dataset,
            "seed": seed,
            "sizes": sizes,
            "kinds": list(KINDS),
            "held_out_ground_truth": {},
            "videos": {},
            "expressions": [],
        }

    def add_video(self, split: str, name: str, video: Video, frame_names: Optional[Sequence[str]] = None,
                  **extra: Any) -> None:
        entry = video.describe(list(frame_names) if frame_names is not None else None)
        entry.update(extra)
        self.payload["videos"].setdefault(split, {})[name] = entry

    def add_expression(self, split: str, video: str, exp_id: Optional[str], expression: Expression,
                       objects: Sequence[Any], text: Optional[str] = None) -> None:
        """Record one expression; ``text`` overrides the wording when the file holds a variant of it."""
        record = {"split": split, "video": video, "exp_id": exp_id}
        record.update(expression.record())
        if text is not None:
            record["exp"] = text
        record["objects"] = list(objects)
        self.payload["expressions"].append(record)

    def add_held_out(self, split: str) -> str:
        """Register the held-out ground-truth folder of a split and return it (relative to the root)."""
        relative = f"{HELD_OUT_DIR}/{split}"
        self.payload["held_out_ground_truth"][split] = relative
        return relative

    def write(self, root: Path) -> Path:
        return write_json(Path(root) / SIDECAR_NAME, self.payload)
