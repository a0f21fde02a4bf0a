"""Ref-DAVIS17: the raw DAVIS tree the evaluator reads and the converted layout the loader reads
(``DATASETS.md`` §2).

Written under ``root``::

    DAVIS/JPEGImages/480p/<seq>/00000.jpg ...
    DAVIS/Annotations_unsupervised/480p/<seq>/00000.png ...   (palette, DAVIS object ids)
    DAVIS/ImageSets/2017/train.txt, val.txt
    DAVIS/davis_semantics.json
    davis_text_annotations/Davis17_annot1.txt, Davis17_annot1_full_video.txt   (UTF-8)
    davis_text_annotations/Davis17_annot2.txt, Davis17_annot2_full_video.txt   (latin-1)
    train/JPEGImages/<seq>/..., train/Annotations/<seq>/..., train/meta.json
    valid/JPEGImages/<seq>/..., valid/Annotations/<seq>/..., valid/meta.json
    meta_expressions/{train,valid}/meta_expressions.json
    synthetic_meta.json

The converted files are what ``convert_davis_to_ytvos.py`` makes of the raw ones: expressions
sorted by obj_id *as a string*, the four files zipped in the order annot1-first, annot1-full,
annot2-first, annot2-full, so object k owns exp_ids 4k..4k+3.

Quirks: the validation split holds ``blackswan`` and a crowded sequence with ten objects (ids
"1", "10", "2", ... sort as strings); the text files misspell ``classic-car`` (``clasic-car``),
``dogs-scale`` (``dog-scale``) and ``motorbike`` (``motor-bike``); annotator 2 typed ``thé``
once (a non-ASCII character in the latin-1 files).
"""
from __future__ import annotations

from pathlib import Path

from .common import make_video, pick_num_frames, write_jpeg_frames, write_palette_annotations
from .config import Sizes
from .formats import write_json, write_text_lines
from .language import Describer
from .naming import frame_names, video_rng
from .sidecar import Sidecar

NAME = "davis"
CATEGORY_OF_SHAPE = {"circle": "ball", "square": "box", "triangle": "sail", "diamond": "kite", "star": "paper"}
TRAIN_SEQUENCES = ("classic-car", "dogs-scale", "motorbike")
VALID_SEQUENCES = ("blackswan", "shapes-crowd")
CROWD_SEQUENCE = "shapes-crowd"
CROWD_OBJECTS = 10
TRAIN_RECIPES = (("motion_twins", 2, None), ("distinct", 3, "exit"), ("position_twins", 3, None))
BLACKSWAN_RECIPE = ("distinct", 2, None)
ANNOTATION_FILES = (  # (file name, annotator, first-frame only, encoding), in converter zip order
    ("Davis17_annot1.txt", 1, True, "utf-8"),
    ("Davis17_annot1_full_video.txt", 1, False, "utf-8"),
    ("Davis17_annot2.txt", 2, True, "latin-1"),
    ("Davis17_annot2_full_video.txt", 2, False, "latin-1"),
)
MISSPELLINGS = {  # sequence -> (name written in the text files, files that use it)
    "classic-car": ("clasic-car", ("Davis17_annot1.txt", "Davis17_annot1_full_video.txt")),
    "dogs-scale": ("dog-scale", ("Davis17_annot2.txt", "Davis17_annot2_full_video.txt")),
    "motorbike": ("motor-bike", ("Davis17_annot1_full_video.txt",)),
}
NON_ASCII_ARTICLE = "thé"


def sequence_names(split: str, count: int) -> list[str]:
    """DAVIS sequence names of a split: real names first, then ``shapes-<split>-NN``."""
    fixed = TRAIN_SEQUENCES if split == "train" else VALID_SEQUENCES
    return list(fixed[:count]) + [f"shapes-{split}-{i:02d}" for i in range(len(fixed), count)]


def _build_sequence(name: str, split: str, index: int, seed: int, sizes: Sizes, size_index: int):
    rng = video_rng(seed, NAME, split, index)
    num_frames = pick_num_frames(rng, sizes.min_frames, sizes.max_frames)
    if name == CROWD_SEQUENCE:
        video = make_video(name, rng, sizes.frame_size(size_index), num_frames, "distinct", CROWD_OBJECTS,
                           shape_sizes=("small",))
    else:
        recipe, count, leaving = BLACKSWAN_RECIPE if name == "blackswan" else TRAIN_RECIPES[index % len(TRAIN_RECIPES)]
        video = make_video(name, rng, sizes.frame_size(size_index), num_frames, recipe, count, leaving=leaving)
    return video, rng


def _with_non_ascii_article(text: str) -> str:
    """Annotator 2's typo: "thé" for a leading "the" (the one non-ASCII character of the latin-1 files)."""
    return NON_ASCII_ARTICLE + text[len("the"):] if text.startswith("the ") else text


def _annotator_expressions(video, rng) -> dict[int, list]:
    """obj_id -> the four Expressions in converter order (annot1-first, annot1-full, annot2-first, annot2-full).

    Objects no wording singles out get no lines at all, which keeps the four files aligned.
    """
    first_frame = Describer(video, rng, frames=[0])
    whole_video = Describer(video, rng)
    result = {}
    for obj in video.objects:
        full = whole_video.refer(obj.obj_id, mention_motion=True)
        if full is None:
            continue
        full_detailed = whole_video.refer(obj.obj_id, detailed=True, mention_motion=True)
        first = first_frame.refer(obj.obj_id) or full
        first_detailed = first_frame.refer(obj.obj_id, detailed=True) or full_detailed
        result[obj.obj_id] = [first, full, first_detailed, full_detailed]
    return result


def write(root: Path, seed: int, sizes: Sizes) -> Path:
    """Write the Ref-DAVIS17 trees under ``root`` and return ``root``."""
    root = Path(root)
    sidecar = Sidecar(NAME, seed, sizes.as_dict())
    davis = root / "DAVIS"
    split_names = {"train": sequence_names("train", sizes.videos["train"]),
                   "valid": sequence_names("valid", sizes.videos["valid"])}
    lines = {file_name: [] for file_name, *_ in ANNOTATION_FILES}
    semantics = {}
    converted = {"train": {}, "valid": {}}
    meta = {"train": {}, "valid": {}}
    size_index = 0
    for split, names in split_names.items():
        for index, name in enumerate(names):
            video, rng = _build_sequence(name, split, index, seed, sizes, size_index)
            size_index += 1
            frames = frame_names(video.num_frames)
            for folder in (davis / "JPEGImages" / "480p" / name, root / split / "JPEGImages" / name):
                write_jpeg_frames(folder, video, frames)
            for folder in (davis / "Annotations_unsupervised" / "480p" / name, root / split / "Annotations" / name):
                write_palette_annotations(folder, video, frames)
            semantics[name] = {str(obj.obj_id): CATEGORY_OF_SHAPE[obj.shape] for obj in video.objects}
            meta[split][name] = {"objects": {k: {"category": v} for k, v in semantics[name].items()}}
            sidecar.add_video(split, name, video, frames)

            per_object = _annotator_expressions(video, rng)
            texts = {obj_id: [e.text for e in exps] for obj_id, exps in per_object.items()}
            if split == "train" and index == 0 and per_object:
                texts[min(per_object)][2] = _with_non_ascii_article(texts[min(per_object)][2])
            for slot, (file_name, *_rest) in enumerate(ANNOTATION_FILES):
                written_name = name
                if name in MISSPELLINGS and file_name in MISSPELLINGS[name][1]:
                    written_name = MISSPELLINGS[name][0]
                for obj_id in sorted(per_object):
                    lines[file_name].append(f'{written_name} {obj_id} "{texts[obj_id][slot]}"')

            expressions = {}
            for k, obj_id in enumerate(sorted(per_object, key=str)):
                for slot in range(len(ANNOTATION_FILES)):
                    exp_id = str(4 * k + slot)
                    expressions[exp_id] = {"exp": texts[obj_id][slot], "obj_id": str(obj_id)}
                    sidecar.add_expression(split, name, exp_id, per_object[obj_id][slot], [obj_id],
                                           text=texts[obj_id][slot])
            converted[split][name] = {"expressions": expressions, "frames": frames}

    for file_name, _annotator, _first_only, encoding in ANNOTATION_FILES:
        write_text_lines(root / "davis_text_annotations" / file_name, lines[file_name], encoding=encoding)
    write_text_lines(davis / "ImageSets" / "2017" / "train.txt", split_names["train"])
    write_text_lines(davis / "ImageSets" / "2017" / "val.txt", split_names["valid"])
    write_json(davis / "davis_semantics.json", semantics)
    for split in ("train", "valid"):
        write_json(root / split / "meta.json", {"videos": meta[split]})
        write_json(root / "meta_expressions" / split / "meta_expressions.json", {"videos": converted[split]})
    sidecar.write(root)
    return root
