"""JHMDB-Sentences checks (``DATASETS.md`` §5): frames, puppet masks, sentences, derived metadata."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

from rvos.datasets.sentences import is_sentence

from .files import (check_coco_ground_truth, check_image, load_json, load_mat_variable, parallel,
                    read_csv_with_header)
from .report import Report

SPLITS = ("test",)
TEXT_HEADER = ["video_id", "query"]
FRAME_NAME = re.compile(r"^\d{5}\.png$")
METADATA_PREFIX = "./jhmdb_sentences/"
METADATA_FILE = "jhmdb_sentences_samples_metadata.json"
GT_FILE = "jhmdb_sentences_gt_annotations_in_coco_format.json"


def resolve_metadata_path(root: Path, recorded: str) -> Path:
    """A metadata path (``./jhmdb_sentences/...``, relative to the folder holding the dataset) under ``root``."""
    if recorded.startswith(METADATA_PREFIX):
        return Path(root) / recorded[len(METADATA_PREFIX):]
    return Path(root) / recorded


def _check_video(report: Report, root: Path, video_id: str, decode: bool, totals: dict) -> None:
    folders = sorted((root / "Rename_Images").glob(f"*/{video_id}"))
    if len(folders) != 1:
        report.add(root / "Rename_Images" / "*" / video_id,
                   f"expected exactly one frame folder for video {video_id}, found {len(folders)}")
        return
    folder = folders[0]
    frames = sorted(folder.glob("*.png"))
    names = [p.name for p in frames]
    if names != [f"{i:05d}.png" for i in range(1, len(names) + 1)]:
        report.add(folder, "frames must be named 00001.png, 00002.png, ... without gaps")
    size = None
    for path in frames:
        found = check_image(report, path, decode=decode, size=size)
        size = size or found
    mat_path = root / "puppet_mask" / folder.parent.name / video_id / "puppet_mask.mat"
    part_mask = load_mat_variable(report, mat_path, "part_mask")
    if part_mask is None:
        return
    if part_mask.ndim != 3:
        report.add(mat_path, f"'part_mask' must be (H, W, T), got shape {part_mask.shape}")
        return
    if size is not None and part_mask.shape[:2] != size:
        report.add(mat_path, f"'part_mask' frames are {part_mask.shape[0]}x{part_mask.shape[1]}, "
                             f"the PNG frames {size[0]}x{size[1]}")
    totals[video_id] = min(len(frames), part_mask.shape[2])
    if part_mask.shape[2] < len(frames):
        report.count("test", "videos with fewer masks than frames", 1)


def _check_metadata(report: Report, root: Path, totals: dict) -> None:
    path = root / METADATA_FILE
    if not path.exists():
        return
    samples = load_json(report, path)
    if not isinstance(samples, list):
        if samples is not None:
            report.add(path, "expected a list of [video_id, frame path, mask path, total frames, query]")
        return
    report.count("test", "evaluation samples", len(samples))
    for index, sample in enumerate(samples):
        if not (isinstance(sample, list) and len(sample) == 5 and isinstance(sample[3], int)):
            report.add(path, f"entry {index}: expected [video_id, frame path, mask path, total frames (int), query]")
            continue
        video_id, frame_path, mask_path, total, query = sample
        if not is_sentence(query):
            report.add(path, f"entry {index}: empty query {query!r} (video {video_id})")
        frame_file = resolve_metadata_path(root, frame_path)
        if not frame_file.is_file():
            report.add(path, f"entry {index}: frame {frame_path} does not exist under {root}")
        elif not int(frame_file.stem) <= total:
            report.add(path, f"entry {index}: frame {frame_file.stem} is beyond video_total_frames {total}")
        if not resolve_metadata_path(root, mask_path).is_file():
            report.add(path, f"entry {index}: mask file {mask_path} does not exist under {root}")
        if video_id in totals and totals[video_id] != total:
            report.add(path, f"entry {index}: video_total_frames {total} differs from min(#PNG, #masks) = "
                             f"{totals[video_id]}")


def check(root: Path, splits: Sequence[str], report: Report, decode: bool = True, workers: int = 1) -> None:
    root = Path(root)
    rows = read_csv_with_header(report, root / "jhmdb_annotation.txt", TEXT_HEADER)
    for number, (video_id, query) in enumerate(rows, start=1):
        if not is_sentence(query):
            report.add(root / "jhmdb_annotation.txt", f"data row {number}: empty query {query!r} (video {video_id})")
    report.count("test", "videos with a sentence", len(rows))
    totals: dict = {}
    parallel([row[0] for row in rows], lambda video_id: _check_video(report, root, video_id, decode, totals), workers)
    _check_metadata(report, root, totals)
    if (root / GT_FILE).exists():
        check_coco_ground_truth(report, root / GT_FILE, with_bbox=False)
