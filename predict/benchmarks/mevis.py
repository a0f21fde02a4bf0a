"""MeViS inference (DATASETS.md §3.4, MODEL_FAMILY.md §2.3).

Reads ``<mevis_path>/<split>/meta_expressions.json`` (splits ``valid_u``, ``valid``, ``test``) and
``<split>/JPEGImages``; videos in sorted order. Long videos run in ``--sub_video_len`` sub-videos:
interleaved (every N-th frame) by default, each choosing its own query; contiguous with
``--no_sampling``, one query for the whole video. Output:
``<output_dir>/<split>/Annotations/<video>/<exp_id>/<frame>.png`` (what ``tools/evaluate.py
--protocol mevis --results <output_dir>/valid_u/Annotations`` reads). The CodaLab zip (``valid``,
``test``) holds ``<video>/<exp_id>/<frame>.png`` at the archive root.
"""
from pathlib import Path
from typing import List

from rvos.predict.base import VideoJob, Window, WindowPlan, check_frame_folder, sub_video_windows
from rvos.predict.benchmarks.binary import BinaryMaskBenchmark
from rvos.predict.benchmarks.ytvos import expressions_of, read_meta_videos


SPLITS = ("valid_u", "valid", "test")
ZIPPED_SPLITS = ("valid", "test")


def sub_video_plan(job: VideoJob, num_frames: int, sub_video_len: int, contiguous: bool) -> WindowPlan:
    """``--sub_video_len`` windows with every expression (see ``sub_video_windows``)."""
    expressions = list(range(len(job.expressions)))
    windows = sub_video_windows(num_frames, sub_video_len, interleaved=not contiguous)
    return WindowPlan([Window(positions, expressions) for positions in windows],
                      video_query=contiguous and len(windows) > 1)


class MeViSBenchmark(BinaryMaskBenchmark):
    name = "mevis"
    multi_object = True

    @property
    def root(self) -> Path:
        return Path(self.args.mevis_path)

    @property
    def zip_by_default(self) -> bool:
        return self.split in ZIPPED_SPLITS

    def jobs(self) -> List[VideoJob]:
        if self.split not in SPLITS:
            raise ValueError(f"MeViS inference splits are {SPLITS}, got --split {self.split!r}")
        videos = read_meta_videos(self.root / self.split / "meta_expressions.json")
        frames_root = self.root / self.split / "JPEGImages"
        jobs = []
        for name in sorted(videos):
            frames = sorted(videos[name]["frames"])
            jobs.append(VideoJob(name, expressions_of(videos[name]), frame_files=check_frame_folder(
                name, frames_root / name, frames, ".jpg"), frame_names=frames))
        return jobs

    def plan(self, job: VideoJob, num_frames: int) -> WindowPlan:
        return sub_video_plan(job, num_frames, self.args.sub_video_len, self.args.no_sampling)

    def expression_dir(self, job: VideoJob, exp_id: str) -> Path:
        return self.output_root / "Annotations" / job.name / exp_id

    def zip_path(self) -> Path:
        return Path(self.args.output_dir) / f"submission_mevis_{self.split}.zip"
