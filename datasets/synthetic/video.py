"""A single mp4 of moving shapes with two example sentences, for the custom-video path.

Written under ``root``::

    synthetic_video.mp4      (H.264 yuv420p, or MPEG-4 part 2 where libx264 is missing)
    synthetic_video.json     {"video", "fps", "codec", "num_frames", "height", "width",
                              "expressions": [{"exp", "kind", "needs_motion", "obj_ids",
                                               "masks": [COCO RLE or null per frame]}]}
    synthetic_meta.json

The scene holds two identical shapes moving in opposite directions and one shape that looks
different; the sentences are an appearance one (the odd shape) and a motion one (one twin).
Masks are the visible masks of the referred shape in each frame.
"""
from __future__ import annotations

from pathlib import Path

from .common import make_video
from .config import Sizes
from .formats import encode_rle, video_codec, write_json, write_mp4
from .language import Describer
from .naming import video_rng
from .sidecar import Sidecar

NAME = "video"
VIDEO_FILE = "synthetic_video.mp4"
JSON_FILE = "synthetic_video.json"
FPS = 10


def write(root: Path, seed: int, sizes: Sizes) -> Path:
    """Write the mp4 and its json under ``root`` and return ``root``."""
    root = Path(root)
    sidecar = Sidecar(NAME, seed, sizes.as_dict())
    rng = video_rng(seed, NAME, "video", 0)
    video = make_video("synthetic_video", rng, sizes.frame_size(0), sizes.max_frames, "motion_twins", 3, crossing=True)
    describer = Describer(video, rng)
    twin, _, odd = video.objects
    chosen = [describer.refer(odd.obj_id), describer.refer(twin.obj_id)]
    write_mp4(root / VIDEO_FILE, video.frames, FPS)
    expressions = []
    for expression in chosen:
        masks = video.visible_masks[video.index_of(expression.obj_ids[0])]
        entry = expression.record()
        entry["obj_ids"] = list(expression.obj_ids)
        entry["masks"] = [encode_rle(mask) if mask.any() else None for mask in masks]
        expressions.append(entry)
        sidecar.add_expression("video", video.name, str(len(expressions) - 1), expression, list(expression.obj_ids))
    write_json(root / JSON_FILE, {"video": VIDEO_FILE, "fps": FPS, "codec": video_codec(),
                                  "num_frames": video.num_frames, "height": video.height, "width": video.width,
                                  "expressions": expressions})
    sidecar.add_video("video", video.name, video)
    sidecar.write(root)
    return root
