"""Ref-DAVIS17 checks (``DATASETS.md`` §2): the converted YTVOS-style layout and the raw DAVIS tree."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

from rvos.datasets.categories import davis_category_dict

from .expressions import count_videos
from .files import load_json, parallel, read_text, require_dir
from .report import Report
from .ytvos import check_meta_expressions, check_objects_meta, check_video_frames, meta_expressions_path

SPLITS = ("train", "valid")
IMAGE_SET_OF_SPLIT = {"train": "train.txt", "valid": "val.txt"}
TEXT_FILES = (("Davis17_annot1.txt", "utf-8"), ("Davis17_annot1_full_video.txt", "utf-8"),
              ("Davis17_annot2.txt", "latin-1"), ("Davis17_annot2_full_video.txt", "latin-1"))
NAME_FIXES = {"clasic-car": "classic-car", "dog-scale": "dogs-scale", "motor-bike": "motorbike"}
LINE_PATTERN = re.compile(r'^(\S+)\s+(\d+)\s+"(.*)"$')
EXPRESSIONS_PER_OBJECT = 4


def _check_converted(root: Path, split: str, report: Report, decode: bool, workers: int) -> None:
    meta_path = meta_expressions_path(root, split)
    meta = load_json(report, meta_path, "meta_expressions.json")
    if meta is None:
        return
    videos = check_meta_expressions(report, meta_path, meta, need_obj_id=True)
    count_videos(report, split, videos)
    check_objects_meta(report, root / split / "meta.json", videos, need_frames=False, vocabulary=davis_category_dict)
    image_root = root / split / "JPEGImages"
    if not require_dir(report, image_root, "JPEGImages folder"):
        return
    for video_id, entry in sorted(videos.items()):
        if len(entry["expressions"]) % EXPRESSIONS_PER_OBJECT:
            report.add(meta_path, f"video {video_id}: {len(entry['expressions'])} expressions, not a multiple of "
                                  f"{EXPRESSIONS_PER_OBJECT} (inference assumes 4 per object)")
        folder = image_root / video_id
        if folder.is_dir():
            on_disk = sorted(p.stem for p in folder.glob("*.jpg"))
            if on_disk != entry["frames"]:
                report.add(folder, f"JPEG names differ from the 'frames' list of {meta_path}")
    parallel(sorted(videos.items()), lambda item: check_video_frames(
        report, image_root / item[0], item[1]["frames"], decode, root / split / "Annotations" / item[0], meta_path),
        workers)


def _check_raw(root: Path, splits: Sequence[str], report: Report, decode: bool, workers: int) -> None:
    davis = root / "DAVIS"
    semantics_path = davis / "davis_semantics.json"
    semantics = load_json(report, semantics_path, "davis_semantics.json") or {}
    listed = {}
    for split in splits:
        path = davis / "ImageSets" / "2017" / IMAGE_SET_OF_SPLIT[split]
        text = read_text(report, path, "utf-8")
        if text is None:
            continue
        listed[split] = [line.strip() for line in text.splitlines() if line.strip()]
        report.count(split, "DAVIS sequences", len(listed[split]))
    for split, sequences in listed.items():
        for sequence in sequences:
            ids = semantics.get(sequence) if isinstance(semantics, dict) else None
            if semantics and not isinstance(ids, dict):
                report.add(semantics_path, f"sequence {sequence} has no entry")
            elif ids and sorted(ids, key=int) != [str(i) for i in range(1, len(ids) + 1)]:
                report.add(semantics_path, f"sequence {sequence}: object ids must run 1..N, got {sorted(ids, key=int)}")
        image_root = davis / "JPEGImages" / "480p"
        annotation_root = davis / "Annotations_unsupervised" / "480p"

        def check_sequence(sequence: str) -> None:
            frames = sorted(p.stem for p in (image_root / sequence).glob("*.jpg"))
            if (image_root / sequence).is_dir() and not frames:
                report.add(image_root / sequence, "sequence folder holds no JPEG frames")
            check_video_frames(report, image_root / sequence, frames, decode, annotation_root / sequence,
                               davis / "ImageSets" / "2017" / IMAGE_SET_OF_SPLIT[split])

        parallel(sequences, check_sequence, workers)
    for file_name, encoding in TEXT_FILES:
        path = root / "davis_text_annotations" / file_name
        text = read_text(report, path, encoding)
        if text is None:
            continue
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            match = LINE_PATTERN.match(line.strip())
            if match is None:
                report.add(path, f"line {number}: expected <sequence> <obj_id> \"<expression>\"")
                continue
            if not isinstance(semantics, dict) or not semantics:
                continue
            sequence = NAME_FIXES.get(match.group(1), match.group(1))
            ids = semantics.get(sequence)
            if not isinstance(ids, dict):
                report.add(path, f"line {number}: sequence {sequence} is not in davis_semantics.json")
            elif match.group(2) not in ids:
                report.add(path, f"line {number}: object {match.group(2)} of {sequence} "
                                 f"is not in davis_semantics.json")


def check(root: Path, splits: Sequence[str], report: Report, decode: bool = True, workers: int = 1) -> None:
    root = Path(root)
    for split in splits:
        _check_converted(root, split, report, decode, workers)
    _check_raw(root, splits, report, decode, workers)
