"""Ref-YouTube-VOS inference (DATASETS.md §1.4).

Reads ``meta_expressions/<split>/meta_expressions.json``; for ``valid`` the videos listed in
``meta_expressions/test`` are dropped (the valid meta also lists the test videos). Videos run in
sorted order, every expression on the whole video in one window. Output:
``<output_dir>/<split>/<video>/<exp_id>/<frame>.png`` (mode L, {0, 255}, original size, one file per
frame of the meta). The submission zip holds ``Annotations/<video>/<exp_id>/<frame>.png``.
"""
import logging
from pathlib import Path
from typing import List, Tuple

from rvos.datasets.base import read_json
from rvos.datasets.sentences import expression_text
from rvos.predict.base import Expression, VideoJob, Window, WindowPlan, check_frame_folder
from rvos.predict.benchmarks.binary import BinaryMaskBenchmark

logger = logging.getLogger(__name__)

SPLITS = ("valid", "test")
SUBMISSION_ROOT = "Annotations"
OFFICIAL_VALID_VIDEOS = 202


def read_meta_videos(path: Path) -> dict:
    """The ``videos`` mapping of a meta_expressions.json, checked."""
    videos = read_json(path).get("videos")
    if not isinstance(videos, dict):
        raise ValueError(f"{path}: no top-level 'videos' mapping")
    for video, entry in videos.items():
        if not isinstance(entry, dict) or "frames" not in entry or "expressions" not in entry:
            raise ValueError(f"{path}: video {video!r} lacks 'frames' or 'expressions'")
        for exp_id, expression in entry["expressions"].items():
            expression_text(expression.get("exp"), path, f"expression {exp_id!r} of video {video!r}")
    return videos


def expressions_of(entry: dict) -> List[Expression]:
    """A meta video entry's expressions in file order (exp_ids verbatim)."""
    return [Expression(str(exp_id), expression["exp"]) for exp_id, expression in entry["expressions"].items()]


def whole_video_plan(job: VideoJob, num_frames: int) -> WindowPlan:
    return WindowPlan([Window(list(range(num_frames)), list(range(len(job.expressions))))])


class YTVOSBenchmark(BinaryMaskBenchmark):
    name = "ytvos"
    zip_by_default = True
    submission_root = SUBMISSION_ROOT

    @property
    def root(self) -> Path:
        return Path(self.args.ytvos_path)

    def video_names(self) -> Tuple[dict, List[str]]:
        """The meta videos of the split and the sorted names inferred (valid minus test)."""
        if self.split not in SPLITS:
            raise ValueError(f"Ref-YouTube-VOS inference splits are {SPLITS}, got --split {self.split!r}")
        meta = self.root / "meta_expressions" / self.split / "meta_expressions.json"
        videos = read_meta_videos(meta)
        names = set(videos)
        if self.split == "valid":
            test_meta = self.root / "meta_expressions" / "test" / "meta_expressions.json"
            if not test_meta.is_file():
                raise FileNotFoundError(f"{test_meta} not found: the valid meta also lists the test videos and the "
                                        "test meta is needed to drop them (DATASETS.md §1.4)")
            names -= set(read_meta_videos(test_meta))
            if len(names) != OFFICIAL_VALID_VIDEOS:
                logger.warning("%d valid videos after dropping the test videos (the official split has %d)",
                               len(names), OFFICIAL_VALID_VIDEOS)
        return videos, sorted(names)

    def jobs(self) -> List[VideoJob]:
        videos, names = self.video_names()
        frames_root = self.root / self.split / "JPEGImages"
        jobs = []
        for name in names:
            entry = videos[name]
            frames = sorted(entry["frames"])
            jobs.append(VideoJob(name, expressions_of(entry), frame_files=check_frame_folder(
                name, frames_root / name, frames, ".jpg"), frame_names=frames))
        return jobs

    def plan(self, job: VideoJob, num_frames: int) -> WindowPlan:
        return whole_video_plan(job, num_frames)

    def expression_dir(self, job: VideoJob, exp_id: str) -> Path:
        return self.output_root / job.name / exp_id

    def zip_path(self) -> Path:
        return Path(self.args.output_dir) / f"submission_ytvos_{self.split}.zip"
