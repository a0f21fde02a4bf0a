"""A2D-Sentences checks (``DATASETS.md`` §4): videoset.csv, text annotations, mp4s, h5 masks, derived files."""
from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Sequence

from rvos.datasets.sentences import is_sentence

from .files import (check_coco_ground_truth, load_json, parallel, probe_video, read_csv_with_header, read_h5,
                    read_text, require_dir)
from .report import Report

SPLITS = ("train", "test")
SUBSET_CODE = {"train": 0, "test": 1}
VIDEO_DIR_NAMES = ("clips320H", "CLIPS320")
TEXT_HEADER = ["video_id", "instance_id", "query"]
COPY_INSTANCE = "1 (copy)"
H5_NAME = re.compile(r"^\d{5}\.h5$")
VIDEOSET_COLUMNS = 9


def _read_videoset(report: Report, path: Path) -> dict:
    """{video id: subset code} from the header-less 9-column videoset.csv."""
    text = read_text(report, path, "utf-8")
    if text is None:
        return {}
    subsets = {}
    for number, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not row:
            continue
        if len(row) != VIDEOSET_COLUMNS:
            report.add(path, f"row {number}: {len(row)} columns, expected {VIDEOSET_COLUMNS} (the file has no header)")
            continue
        try:
            numbers = [int(float(value)) for value in row[4:]]
        except ValueError:
            report.add(path, f"row {number}: height, width, frame counts and subset must be numbers")
            continue
        if numbers[-1] not in SUBSET_CODE.values():
            report.add(path, f"row {number}: subset must be 0 (train) or 1 (test), got {numbers[-1]}")
            continue
        subsets[row[0]] = numbers[-1]
    return subsets


def _read_text_rows(report: Report, path: Path) -> list:
    rows = []
    for number, row in enumerate(read_csv_with_header(report, path, TEXT_HEADER), start=2):
        if row[1] != COPY_INSTANCE and not row[1].strip().isdigit():
            report.add(path, f"data row {number - 1}: instance_id {row[1]!r} is not an integer")
        elif not is_sentence(row[2]):
            report.add(path, f"data row {number - 1}: empty query {row[2]!r} (video {row[0]})")
        else:
            rows.append(row)
    return rows


def _check_h5(report: Report, path: Path, frame_size, frame_count) -> None:
    content = read_h5(report, path, ("instance", "reMask", "reBBox"))
    if content is None:
        return
    instances, masks, boxes = content["instance"], content["reMask"], content["reBBox"]
    if instances.ndim != 1 or instances.size == 0:
        report.add(path, f"'instance' must be a non-empty 1-D array, got shape {instances.shape}")
        return
    count = instances.size
    if masks.dtype.name != "uint8":
        report.add(path, f"'reMask' must be uint8, got {masks.dtype}")
    if count == 1 and masks.ndim == 2:
        transposed = masks.shape[::-1]
    elif masks.ndim == 3 and masks.shape[0] >= count:
        transposed = masks.shape[:0:-1]
    else:
        report.add(path, f"'reMask' shape {masks.shape} does not fit {count} instances ((N, W, H), or (W, H) for one)")
        return
    if frame_size is not None and tuple(transposed) != tuple(frame_size):
        report.add(path, f"masks are {transposed[0]}x{transposed[1]} after transposing, the video frames "
                         f"{frame_size[0]}x{frame_size[1]}")
    if boxes.shape[0] != 4 and boxes.size != 4:
        report.add(path, f"'reBBox' shape {boxes.shape} is not (4, N)")
    if frame_count is not None and int(path.stem) > frame_count:
        report.add(path, f"annotated frame {int(path.stem)} is beyond the video's {frame_count} decoded frames")


def _check_derived(report: Report, root: Path, videos: set) -> None:
    for split in SPLITS:
        path = root / f"a2d_sentences_single_frame_{split}_annotations.json"
        if not path.exists():
            continue
        samples = load_json(report, path)
        if not isinstance(samples, list):
            if samples is not None:
                report.add(path, "expected a list of [query, video_id, frame_idx, instance_id]")
            continue
        for index, sample in enumerate(samples):
            if not (isinstance(sample, list) and len(sample) == 4 and isinstance(sample[0], str)
                    and isinstance(sample[2], int) and isinstance(sample[3], int)):
                report.add(path, f"entry {index}: expected [query, video_id, frame_idx (int), instance_id (int)]")
            elif not is_sentence(sample[0]):
                report.add(path, f"entry {index}: empty query {sample[0]!r}")
            elif sample[1] not in videos:
                report.add(path, f"entry {index}: video {sample[1]} is not in Release/videoset.csv")
        report.count(split, "single-frame samples", len(samples))
    path = root / "a2d_sentences_test_annotations_in_coco_format.json"
    if path.exists():
        check_coco_ground_truth(report, path, with_bbox=True)


def check(root: Path, splits: Sequence[str], report: Report, decode: bool = True, workers: int = 1) -> None:
    root = Path(root)
    subsets = _read_videoset(report, root / "Release" / "videoset.csv")
    report.count("all", "videoset.csv rows", len(subsets))
    rows = _read_text_rows(report, root / "text_annotations" / "a2d_annotation.txt")
    report.count("all", "text rows", len(rows))
    report.count("all", f"'{COPY_INSTANCE}' rows (dropped by loaders)", sum(row[1] == COPY_INSTANCE for row in rows))
    missed_text = read_text(report, root / "text_annotations" / "a2d_missed_videos.txt", "utf-8")
    missed = set(missed_text.split()) if missed_text is not None else set()
    video_dir = next((root / "Release" / name for name in VIDEO_DIR_NAMES if (root / "Release" / name).is_dir()), None)
    if video_dir is None:
        report.add(root / "Release" / VIDEO_DIR_NAMES[0], f"missing video folder (tried {', '.join(VIDEO_DIR_NAMES)})")
    h5_root = root / "text_annotations" / "a2d_annotation_with_instances"
    require_dir(report, h5_root, "h5 annotation folder")
    sentences = {}
    for row in rows:
        if row[0] not in subsets:
            report.add(root / "text_annotations" / "a2d_annotation.txt",
                       f"video {row[0]} is not in Release/videoset.csv")
        elif row[1] != COPY_INSTANCE:
            sentences.setdefault(row[0], 0)
            sentences[row[0]] += 1
    wanted = {SUBSET_CODE[split]: split for split in splits}
    used = sorted(v for v, code in subsets.items() if code in wanted and v not in missed and v in sentences)
    for split in splits:
        chosen = [v for v in used if subsets[v] == SUBSET_CODE[split]]
        report.count(split, "videos with sentences", len(chosen))
        report.count(split, "sentences", sum(sentences[v] for v in chosen))

    def check_video(video_id: str) -> None:
        probe = probe_video(report, video_dir / f"{video_id}.mp4", decode) if video_dir is not None else None
        frame_count, frame_size = probe if probe is not None else (None, None)
        folder = h5_root / video_id
        if not folder.is_dir():
            report.add(folder, "missing h5 folder of a video with sentences")
            return
        files = sorted(folder.iterdir())
        for path in files:
            if not H5_NAME.match(path.name):
                report.add(path, "h5 files must be named <5-digit 1-based frame number>.h5")
            else:
                _check_h5(report, path, frame_size, frame_count)
        report.count(SPLITS[subsets[video_id]], "annotated frames (h5)", len(files))

    parallel(used, check_video, workers)
    _check_derived(report, root, set(subsets))
