"""MeViS checks (``DATASETS.md`` §3): meta_expressions, mask_dict RLEs aligned with the frames, JPEGs."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from .expressions import check_video_entries, count_videos
from .files import check_rle, load_json, parallel, require_dir
from .report import Report
from .ytvos import check_video_frames

SPLITS = ("train", "valid_u", "valid")
SPLITS_WITH_MASKS = ("train", "valid_u")


def _check_meta(report: Report, path: Path, meta, need_ids: bool) -> dict:
    """Validate a MeViS meta_expressions file (``obj_id``/``anno_id`` int lists where masks exist)."""

    def check_expression(video_id: str, exp_id: str, expression: dict) -> None:
        if not need_ids:
            return
        obj_ids, anno_ids = expression.get("obj_id"), expression.get("anno_id")
        if not (isinstance(anno_ids, list) and all(isinstance(a, int) for a in anno_ids)):
            report.add(path, f"video {video_id} expression {exp_id}: 'anno_id' must be a list of ints")
        elif not (isinstance(obj_ids, list) and len(obj_ids) == len(anno_ids)):
            report.add(path, f"video {video_id} expression {exp_id}: 'obj_id' must be a list as long as 'anno_id'")

    return check_video_entries(report, path, meta, check_expression)


def _check_masks(report: Report, path: Path, mask_dict, video_id: str, entry: dict, size, decode: bool) -> None:
    frames = entry["frames"]
    seen = set()
    for exp_id, expression in entry["expressions"].items():
        for anno_id in expression.get("anno_id") or []:
            if not isinstance(anno_id, int) or anno_id in seen:
                continue
            seen.add(anno_id)
            masks = mask_dict.get(str(anno_id))
            if not isinstance(masks, list):
                report.add(path, f"anno_id {anno_id} (video {video_id} expression {exp_id}) has no mask list")
                continue
            if len(masks) != len(frames):
                report.add(path, f"anno_id {anno_id}: {len(masks)} entries for the {len(frames)} frames "
                                 f"of video {video_id}")
            for index, rle in enumerate(masks):
                if rle is not None:
                    check_rle(report, path, rle, f"anno_id {anno_id} frame {index}", size, decode)


def check(root: Path, splits: Sequence[str], report: Report, decode: bool = True, workers: int = 1) -> None:
    root = Path(root)
    for split in splits:
        split_dir = root / split
        if not require_dir(report, split_dir, f"{split} split folder"):
            continue
        meta_path = split_dir / "meta_expressions.json"
        meta = load_json(report, meta_path, "meta_expressions.json")
        if meta is None:
            continue
        with_masks = split in SPLITS_WITH_MASKS
        videos = _check_meta(report, meta_path, meta, need_ids=with_masks)
        count_videos(report, split, videos)
        mask_path = split_dir / "mask_dict.json"
        mask_dict = load_json(report, mask_path, "mask_dict.json") if with_masks else None
        if mask_dict is not None and not isinstance(mask_dict, dict):
            report.add(mask_path, "expected {anno_id: [RLE or null per frame]}")
            mask_dict = None
        if mask_dict is not None:
            report.count(split, "anno_ids in mask_dict", len(mask_dict))
        image_root = split_dir / "JPEGImages"
        if not require_dir(report, image_root, "JPEGImages folder"):
            continue

        def check_video(item) -> None:
            video_id, entry = item
            size = check_video_frames(report, image_root / video_id, entry["frames"], decode, meta_path=meta_path)
            if mask_dict is not None:
                _check_masks(report, mask_path, mask_dict, video_id, entry, size, decode)

        parallel(sorted(videos.items()), check_video, workers)
