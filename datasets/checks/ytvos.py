"""Ref-YouTube-VOS checks (``DATASETS.md`` §1); the meta_expressions and frame checks are shared with DAVIS."""
from __future__ import annotations

from pathlib import Path
from typing import Collection, Optional, Sequence

from rvos.datasets.categories import ytvos_category_dict

from .expressions import check_video_entries, count_videos
from .files import check_image, load_json, parallel, require_dir
from .report import Report

SPLITS = ("train", "valid", "test")


def meta_expressions_path(root: Path, split: str) -> Path:
    return Path(root) / "meta_expressions" / split / "meta_expressions.json"


def check_meta_expressions(report: Report, path: Path, meta, need_obj_id: bool) -> dict:
    """Validate a YTVOS-style meta_expressions file (``obj_id`` a digit string when required)."""

    def check_expression(video_id: str, exp_id: str, expression: dict) -> None:
        obj_id = expression.get("obj_id")
        if need_obj_id and not (isinstance(obj_id, str) and obj_id.isdigit()):
            report.add(path, f"video {video_id} expression {exp_id}: 'obj_id' must be a digit string, got {obj_id!r}")

    return check_video_entries(report, path, meta, check_expression)


def check_video_frames(report: Report, image_dir: Path, frames: Sequence[str], decode: bool,
                       annotation_dir: Optional[Path] = None,
                       meta_path: Optional[Path] = None) -> Optional[tuple[int, int]]:
    """Every listed frame has a decodable JPEG of one size (and a palette PNG of that size).

    Returns the (height, width) of the video's frames when they were decoded.
    """
    if not image_dir.is_dir():
        listed = f" (listed in {meta_path})" if meta_path else ""
        report.add(image_dir, f"missing video folder{listed}")
        return None
    if annotation_dir is not None and not require_dir(report, annotation_dir, "annotation folder"):
        annotation_dir = None
    video_size = None
    for frame in frames:
        size = check_image(report, image_dir / f"{frame}.jpg", decode=decode, size=video_size)
        video_size = video_size or size
        if annotation_dir is not None:
            check_image(report, annotation_dir / f"{frame}.png", decode=decode, mode="P", size=size)
    return video_size


def check_objects_meta(report: Report, meta_path: Path, videos: dict, need_frames: bool,
                       vocabulary: Collection[str]) -> dict:
    """Validate ``<split>/meta.json``: every expression's obj_id is an object of its video and every
    category is in the benchmark's ``vocabulary`` (the training loader looks it up)."""
    meta = load_json(report, meta_path, "meta.json")
    if meta is None:
        return {}
    objects_by_video = meta.get("videos") if isinstance(meta, dict) else None
    if not isinstance(objects_by_video, dict):
        report.add(meta_path, "expected {'videos': {video_id: {'objects': ...}}}")
        return {}
    for video_id, entry in videos.items():
        objects = (objects_by_video.get(video_id) or {}).get("objects")
        if not isinstance(objects, dict):
            report.add(meta_path, f"video {video_id} (from meta_expressions) has no 'objects'")
            continue
        for obj_id, obj in objects.items():
            if not isinstance(obj, dict) or not isinstance(obj.get("category"), str):
                report.add(meta_path, f"video {video_id} object {obj_id}: needs a string 'category'")
            elif obj["category"] not in vocabulary:
                report.add(meta_path, f"video {video_id} object {obj_id}: unknown category {obj['category']!r}")
            elif need_frames and not isinstance(obj.get("frames"), list):
                report.add(meta_path, f"video {video_id} object {obj_id}: needs a 'frames' list")
        for exp_id, expression in entry["expressions"].items():
            obj_id = expression.get("obj_id")
            if obj_id is not None and str(obj_id) not in objects:
                report.add(meta_path, f"video {video_id} expression {exp_id} refers to object {obj_id}, "
                                      f"which meta.json does not list")
    return objects_by_video


def check(root: Path, splits: Sequence[str], report: Report, decode: bool = True, workers: int = 1) -> None:
    root = Path(root)
    test_path = meta_expressions_path(root, "test")
    test_meta = load_json(report, test_path, "meta_expressions.json (valid inference filters with it)")
    test_videos = check_meta_expressions(report, test_path, test_meta, False) if test_meta is not None else {}
    for split in splits:
        meta_path = meta_expressions_path(root, split)
        meta = test_meta if split == "test" else load_json(report, meta_path, "meta_expressions.json")
        if meta is None:
            continue
        videos = test_videos if split == "test" else check_meta_expressions(report, meta_path, meta, split == "train")
        count_videos(report, split, videos)
        image_root = root / split / "JPEGImages"
        if split == "train":
            check_objects_meta(report, root / "train" / "meta.json", videos, need_frames=True,
                               vocabulary=ytvos_category_dict)
            targets = videos
        elif split == "valid":
            targets = {v: e for v, e in videos.items() if v not in test_videos}
            report.count(split, "videos with frames (listed minus test)", len(targets))
        else:
            targets = videos if image_root.is_dir() else {}
            report.count(split, "videos with frames", len(targets))
        if split != "test" and not require_dir(report, image_root, "JPEGImages folder"):
            continue
        annotations = root / split / "Annotations" if split == "train" else None
        parallel(sorted(targets.items()), lambda item: check_video_frames(
            report, image_root / item[0], item[1]["frames"], decode,
            annotations / item[0] if annotations else None, meta_path), workers)
        if split == "valid":
            for folder in sorted(p for p in image_root.iterdir() if p.is_dir() and p.name not in targets):
                report.add(folder, f"video folder not listed in {meta_path}")
