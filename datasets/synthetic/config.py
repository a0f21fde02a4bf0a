"""Sizes of each synthetic dataset: videos per split, frames per video, frame sizes.

Defaults are the miniature targets of ``DATASETS.md`` §8. Every dataset uses two frame sizes;
the second one keeps its default ratio to the first when ``height``/``width`` are overridden.
Options accepted by :func:`resolve_sizes` (and by ``tools/make_synthetic_data.py``):

- ``num_videos``: videos in the main split (the first split listed below);
- ``num_<split>_videos``: videos in that split (e.g. ``num_valid_videos``);
- ``num_images``: RefCOCO images;
- ``num_frames`` / ``min_frames``: most / fewest frames per video;
- ``height`` / ``width``: the first frame size (the second is derived).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

DATASET_NAMES = ("ytvos", "davis", "mevis", "a2d", "jhmdb", "refcoco", "video")


@dataclass(frozen=True)
class _Default:
    splits: dict
    frames: tuple[int, int]
    size: tuple[int, int]
    second_size: tuple[int, int]
    min_frames_floor: int = 3


DEFAULTS = {
    "ytvos": _Default({"train": 6, "valid": 3, "test": 2}, (6, 12), (96, 160), (96, 128)),
    "davis": _Default({"train": 3, "valid": 2}, (8, 15), (96, 160), (108, 144)),
    "mevis": _Default({"train": 4, "valid_u": 2, "valid": 2}, (8, 20), (96, 160), (96, 128)),
    "a2d": _Default({"train": 3, "test": 2}, (20, 40), (320, 428), (320, 512)),
    "jhmdb": _Default({"test": 3}, (15, 20), (240, 320), (240, 320)),
    "refcoco": _Default({"images": 12}, (1, 1), (96, 160), (128, 96), min_frames_floor=1),
    "video": _Default({"video": 1}, (20, 20), (96, 160), (96, 160)),
}
VIDEO_FILE_DATASETS = ("a2d", "video")
MINIMUM_VIDEOS = {("davis", "valid"): 1, ("jhmdb", "test"): 1, ("refcoco", "images"): 4, ("video", "video"): 1}


@dataclass(frozen=True)
class Sizes:
    """Resolved sizes of one synthetic dataset."""

    videos: dict = field(default_factory=dict)
    min_frames: int = 1
    max_frames: int = 1
    frame_sizes: tuple = ()

    def frame_size(self, index: int) -> tuple[int, int]:
        """(height, width) of the video (or image) with this index: the sizes alternate."""
        return tuple(self.frame_sizes[index % len(self.frame_sizes)])

    def as_dict(self) -> dict:
        payload = asdict(self)
        payload["frame_sizes"] = [list(size) for size in self.frame_sizes]
        return payload


def _even(value: float) -> int:
    return max(2, int(round(value / 2.0)) * 2)


def resolve_sizes(name: str, **options: Any) -> Sizes:
    """Sizes of dataset ``name`` from its defaults and the given options.

    Raises ``ValueError`` for an unknown dataset, ``TypeError`` for an option that does not
    apply to it, and ``ValueError`` for impossible values.
    """
    if name not in DEFAULTS:
        raise ValueError(f"unknown synthetic dataset {name!r}; expected one of {DATASET_NAMES}")
    default = DEFAULTS[name]
    videos = dict(default.splits)
    main_split = next(iter(videos))
    allowed = {"num_frames", "min_frames", "height", "width"}
    allowed |= {"num_images"} if name == "refcoco" else set()
    allowed |= set() if name in ("refcoco", "video") else {"num_videos"} | {f"num_{s}_videos" for s in videos}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise TypeError(f"options {unknown} do not apply to the {name!r} dataset; it accepts {sorted(allowed)}")
    for key, value in options.items():
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"option {key} must be an integer, got {value!r}")
    if "num_videos" in options:
        videos[main_split] = options["num_videos"]
    if "num_images" in options:
        videos[main_split] = options["num_images"]
    for split in list(videos):
        videos[split] = options.get(f"num_{split}_videos", videos[split])
    for split, count in videos.items():
        least = MINIMUM_VIDEOS.get((name, split), 0)
        if count < least:
            raise ValueError(f"{name}: split {split!r} needs at least {least} videos, got {count}")
    if name == "refcoco" and ("num_frames" in options or "min_frames" in options):
        raise TypeError("refcoco holds single images: num_frames/min_frames do not apply")
    max_frames = options.get("num_frames", default.frames[1])
    min_frames = options.get("min_frames", min(default.frames[0], max_frames))
    if min_frames < default.min_frames_floor or max_frames < min_frames:
        raise ValueError(f"{name}: need {default.min_frames_floor} <= min_frames <= num_frames, "
                         f"got min_frames={min_frames}, num_frames={max_frames}")
    height = options.get("height", default.size[0])
    width = options.get("width", default.size[1])
    if height < 16 or width < 16:
        raise ValueError(f"{name}: frames must be at least 16x16, got {height}x{width}")
    if name in VIDEO_FILE_DATASETS and (height % 2 or width % 2):
        raise ValueError(f"{name}: mp4 frames need an even height and width, got {height}x{width}")
    second = (_even(height * default.second_size[0] / default.size[0]),
              _even(width * default.second_size[1] / default.size[1]))
    sizes = ((height, width), second) if second != (height, width) else ((height, width),)
    return Sizes(videos=videos, min_frames=min_frames, max_frames=max_frames, frame_sizes=sizes)
