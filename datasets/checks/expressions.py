"""The ``{"videos": {vid: {"expressions": {...}, "frames": [...]}}}`` schema shared by
Ref-YouTube-VOS, Ref-DAVIS and MeViS meta_expressions files."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from rvos.datasets.sentences import is_sentence

from .report import Report

ExpressionCheck = Callable[[str, str, dict], None]


def check_video_entries(report: Report, path: Path, meta, check_expression: ExpressionCheck) -> dict:
    """Validate videos, frames and the ``exp`` text of each expression; ``check_expression(video,
    exp_id, expression)`` adds the benchmark's own checks. Returns the usable videos as
    ``{video: {"frames": [...], "expressions": {...}}}``.
    """
    videos = meta.get("videos") if isinstance(meta, dict) else None
    if not isinstance(videos, dict):
        report.add(path, "expected {'videos': {video_id: ...}}")
        return {}
    usable = {}
    for video_id, entry in videos.items():
        frames = entry.get("frames") if isinstance(entry, dict) else None
        expressions = entry.get("expressions") if isinstance(entry, dict) else None
        if not isinstance(frames, list) or not frames or not all(isinstance(f, str) for f in frames):
            report.add(path, f"video {video_id}: 'frames' must be a non-empty list of frame names")
            continue
        if frames != sorted(frames) or len(set(frames)) != len(frames):
            report.add(path, f"video {video_id}: 'frames' must be sorted and unique")
        if not isinstance(expressions, dict):
            report.add(path, f"video {video_id}: 'expressions' must be a dict")
            continue
        for exp_id, expression in expressions.items():
            if not isinstance(expression, dict) or not isinstance(expression.get("exp"), str):
                report.add(path, f"video {video_id} expression {exp_id}: needs a string 'exp'")
            elif not is_sentence(expression["exp"]):
                report.add(path, f"video {video_id} expression {exp_id}: empty 'exp' text {expression['exp']!r}")
            else:
                check_expression(video_id, exp_id, expression)
        usable[video_id] = {"frames": frames, "expressions": expressions}
    return usable


def count_videos(report: Report, split: str, videos: dict) -> None:
    """Report how many videos, expressions and listed frames a split holds."""
    report.count(split, "videos", len(videos))
    report.count(split, "expressions", sum(len(v["expressions"]) for v in videos.values()))
    report.count(split, "frames", sum(len(v["frames"]) for v in videos.values()))
