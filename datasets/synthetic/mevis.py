"""MeViS (v1) in its real layout (``DATASETS.md`` §3), plus held-out ground truth for ``valid``.

Written under ``root``::

    train/JPEGImages/<vid>/<frame>.jpg     train/meta_expressions.json     train/mask_dict.json
    valid_u/JPEGImages/...                 valid_u/meta_expressions.json   valid_u/mask_dict.json
    valid/JPEGImages/...                   valid/meta_expressions.json     (expressions hold only "exp")
    _synthetic_gt/valid/meta_expressions.json   (with obj_id and anno_id, valid_u format)
    _synthetic_gt/valid/mask_dict.json
    _synthetic_gt/valid/Annotations/<vid>/<exp_id>/<frame>.png   ({0,255}, union of the referred objects)
    synthetic_meta.json

Masks are *amodal*: the whole shape clipped to the frame, including parts hidden behind a nearer
shape, so the masks of crossing shapes overlap (and a multi-object target sums to 2 there).
A shape outside the frame has a ``null`` entry. Each object has one globally unique anno_id;
expressions refer to 1, 2 or 3 of them. Video entries carry an extra numeric ``vid_id``.
"""
from __future__ import annotations

from pathlib import Path

from .common import make_video, pick_num_frames, union_of, write_binary_masks, write_jpeg_frames
from .config import Sizes
from .formats import encode_rle, write_json
from .language import Describer
from .naming import frame_names, hex_id, video_rng
from .sidecar import Sidecar

NAME = "mevis"
SPLITS = ("train", "valid_u", "valid")
SPLITS_WITH_MASKS = ("train", "valid_u")
RECIPE_CYCLE = (
    ("group3", 4, "exit"),
    ("motion_twins", 3, "enter"),
    ("group2", 3, None),
    ("position_twins", 2, None),
)
MAX_GROUP_EXPRESSIONS = 3
DETAILED_EXPRESSION_PROBABILITY = 0.5
FIRST_ANNO_ID = 1000


class _AnnoIds:
    """Hands out globally unique annotation ids."""

    def __init__(self):
        self.next_id = FIRST_ANNO_ID

    def take(self) -> int:
        self.next_id += 1
        return self.next_id - 1


def _build_split(split: str, count: int, first_index: int, seed: int, sizes: Sizes, anno_ids: _AnnoIds):
    """Per video: (video id, Video, frame names, {obj_id: anno_id}, [(exp_id, Expression)])."""
    entries = []
    for index in range(count):
        rng = video_rng(seed, NAME, split, index)
        recipe, num_objects, leaving = RECIPE_CYCLE[(first_index + index) % len(RECIPE_CYCLE)]
        num_frames = pick_num_frames(rng, sizes.min_frames, sizes.max_frames)
        video_id = hex_id(seed, NAME, split, index, 12)
        video = make_video(video_id, rng, sizes.frame_size(first_index + index), num_frames, recipe, num_objects,
                           leaving=leaving, crossing=True)
        annos = {obj.obj_id: anno_ids.take() for obj in video.objects}
        describer = Describer(video, rng)
        expressions = []
        for obj in video.objects:
            expression = describer.refer(obj.obj_id, mention_motion=bool(rng.random() < 0.5))
            if expression is None:
                continue
            expressions.append(expression)
            if rng.random() < DETAILED_EXPRESSION_PROBABILITY:
                expressions.append(describer.refer(obj.obj_id, detailed=True))
        expressions += describer.groups(MAX_GROUP_EXPRESSIONS)
        entries.append((video_id, video, frame_names(num_frames), annos,
                        [(str(i), expression) for i, expression in enumerate(expressions)]))
    return entries


def _meta_expressions(entries, first_vid_id: int, with_ids: bool) -> dict:
    videos = {}
    for offset, (video_id, video, names, annos, expressions) in enumerate(entries):
        exps = {}
        for exp_id, expression in expressions:
            entry = {"exp": expression.text}
            if with_ids:
                entry["obj_id"] = [obj_id - 1 for obj_id in expression.obj_ids]
                entry["anno_id"] = [annos[obj_id] for obj_id in expression.obj_ids]
            exps[exp_id] = entry
        videos[video_id] = {"expressions": exps, "vid_id": first_vid_id + offset, "frames": list(names)}
    return {"videos": videos}


def _mask_dict(entries) -> dict:
    payload = {}
    for _, video, _, annos, _ in entries:
        for i, obj in enumerate(video.objects):
            payload[str(annos[obj.obj_id])] = [encode_rle(mask) if mask.any() else None
                                              for mask in video.amodal_masks[i]]
    return payload


def write(root: Path, seed: int, sizes: Sizes) -> Path:
    """Write the MeViS tree under ``root`` and return ``root``."""
    root = Path(root)
    sidecar = Sidecar(NAME, seed, sizes.as_dict())
    anno_ids = _AnnoIds()
    first_index = 0
    first_vid_id = 0
    for split in SPLITS:
        entries = _build_split(split, sizes.videos[split], first_index, seed, sizes, anno_ids)
        for video_id, video, names, annos, expressions in entries:
            write_jpeg_frames(root / split / "JPEGImages" / video_id, video, names)
            sidecar.add_video(split, video_id, video, names,
                              anno_ids={str(obj_id): anno for obj_id, anno in annos.items()})
            for exp_id, expression in expressions:
                sidecar.add_expression(split, video_id, exp_id, expression, [annos[o] for o in expression.obj_ids])
        with_ids = split in SPLITS_WITH_MASKS
        write_json(root / split / "meta_expressions.json", _meta_expressions(entries, first_vid_id, with_ids))
        if with_ids:
            write_json(root / split / "mask_dict.json", _mask_dict(entries))
        else:
            held_out = root / sidecar.add_held_out(split)
            write_json(held_out / "meta_expressions.json", _meta_expressions(entries, first_vid_id, True))
            write_json(held_out / "mask_dict.json", _mask_dict(entries))
            for video_id, video, names, _, expressions in entries:
                for exp_id, expression in expressions:
                    write_binary_masks(held_out / "Annotations" / video_id / exp_id,
                                       union_of(video.amodal_masks, video, expression.obj_ids), names)
        first_index += len(entries)
        first_vid_id += len(entries)
    sidecar.write(root)
    return root
