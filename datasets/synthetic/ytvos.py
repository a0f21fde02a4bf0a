"""Ref-YouTube-VOS in its real layout (``DATASETS.md`` §1), plus held-out ground truth.

Written under ``root``::

    train/JPEGImages/<vid>/<frame>.jpg      train/Annotations/<vid>/<frame>.png (palette)
    train/meta.json
    valid/JPEGImages/<vid>/...              (valid videos only)
    test/JPEGImages/<vid>/...               (test videos)
    meta_expressions/{train,valid,test}/meta_expressions.json
    _synthetic_gt/{valid,test}/meta_expressions.json        (with obj_id)
    _synthetic_gt/{valid,test}/Annotations/<vid>/<exp_id>/<frame>.png   ({0,255} per expression)
    synthetic_meta.json

Quirks: frame names step by 5 and one train video starts at ``00005``; two frame sizes; the
valid meta also lists the test videos (which have no ``valid/JPEGImages``); one object of the
first train video has the same expression text twice; some objects leave or enter the frame.
"""
from __future__ import annotations

from pathlib import Path

from .common import make_video, pick_num_frames, write_binary_masks, write_jpeg_frames, write_palette_annotations
from .config import Sizes
from .formats import write_json
from .language import Describer
from .naming import frame_names, hex_id, video_rng
from .sidecar import Sidecar

NAME = "ytvos"
CATEGORY_OF_SHAPE = {"circle": "frisbee", "square": "sign", "triangle": "umbrella", "diamond": "hat", "star": "others"}
RECIPE_CYCLE = (
    ("motion_twins", 3, "exit"),
    ("position_twins", 2, None),
    ("distinct", 3, "enter"),
    ("distinct", 1, None),
    ("motion_twins", 2, None),
    ("distinct", 2, "exit"),
)
FRAME_STRIDE = 5
SECOND_EXPRESSION_PROBABILITY = 0.6


def _video_entries(split: str, count: int, seed: int, sizes: Sizes, first_index: int):
    """(video id, Video, frame names, expressions [(exp_id, Expression, text)]) for each video of a split."""
    entries = []
    for index in range(count):
        rng = video_rng(seed, NAME, split, index)
        recipe, num_objects, leaving = RECIPE_CYCLE[(first_index + index) % len(RECIPE_CYCLE)]
        num_frames = pick_num_frames(rng, sizes.min_frames, sizes.max_frames)
        video_id = hex_id(seed, NAME, split, index, 10)
        video = make_video(video_id, rng, sizes.frame_size(first_index + index), num_frames, recipe, num_objects,
                           leaving=leaving)
        start = FRAME_STRIDE if (split == "train" and index == 1) else 0
        names = frame_names(num_frames, start=start, stride=FRAME_STRIDE)
        describer = Describer(video, rng)
        expressions = []
        for obj in video.objects:
            primary = describer.refer(obj.obj_id)
            if primary is None:
                continue
            expressions.append((primary, primary.text))
            duplicate = split == "train" and index == 0 and obj.obj_id == 1
            if duplicate:
                expressions.append((primary, primary.text))
            elif rng.random() < SECOND_EXPRESSION_PROBABILITY:
                detailed = describer.refer(obj.obj_id, detailed=True)
                expressions.append((detailed, detailed.text))
        numbered = [(str(i), expression, text) for i, (expression, text) in enumerate(expressions)]
        entries.append((video_id, video, names, numbered))
    return entries


def _meta_expressions(entries, with_obj_id: bool) -> dict:
    videos = {}
    for video_id, _, names, expressions in sorted(entries, key=lambda entry: entry[0]):
        exps = {}
        for exp_id, expression, text in expressions:
            exps[exp_id] = {"exp": text, "obj_id": str(expression.obj_ids[0])} if with_obj_id else {"exp": text}
        videos[video_id] = {"expressions": exps, "frames": list(names)}
    return {"videos": videos}


def write(root: Path, seed: int, sizes: Sizes) -> Path:
    """Write the Ref-YouTube-VOS tree under ``root`` and return ``root``."""
    root = Path(root)
    sidecar = Sidecar(NAME, seed, sizes.as_dict())
    offsets = {"train": 0, "valid": sizes.videos["train"], "test": sizes.videos["train"] + sizes.videos["valid"]}
    splits = {split: _video_entries(split, sizes.videos[split], seed, sizes, offsets[split]) for split in offsets}

    for split, entries in splits.items():
        for video_id, video, names, expressions in entries:
            write_jpeg_frames(root / split / "JPEGImages" / video_id, video, names)
            sidecar.add_video(split, video_id, video, names)
            for exp_id, expression, text in expressions:
                sidecar.add_expression(split, video_id, exp_id, expression, list(expression.obj_ids), text=text)

    for video_id, video, names, _ in splits["train"]:
        write_palette_annotations(root / "train" / "Annotations" / video_id, video, names)
    write_json(root / "train" / "meta.json", {"videos": {
        video_id: {"objects": {
            str(obj.obj_id): {"category": CATEGORY_OF_SHAPE[obj.shape],
                              "frames": [names[t] for t in video.visible_frames(obj.obj_id)]}
            for obj in video.objects}}
        for video_id, video, names, _ in sorted(splits["train"], key=lambda entry: entry[0])}})

    write_json(root / "meta_expressions" / "train" / "meta_expressions.json", _meta_expressions(splits["train"], True))
    write_json(root / "meta_expressions" / "valid" / "meta_expressions.json",
               _meta_expressions(splits["valid"] + splits["test"], False))
    write_json(root / "meta_expressions" / "test" / "meta_expressions.json", _meta_expressions(splits["test"], False))

    for split in ("valid", "test"):
        held_out = root / sidecar.add_held_out(split)
        write_json(held_out / "meta_expressions.json", _meta_expressions(splits[split], True))
        for video_id, video, names, expressions in splits[split]:
            for exp_id, expression, _ in expressions:
                masks = video.visible_masks[video.index_of(expression.obj_ids[0])]
                write_binary_masks(held_out / "Annotations" / video_id / exp_id, masks, names)
    sidecar.write(root)
    return root
