"""MeViS inference (DATASETS.md §3.4, MODEL_FAMILY.md §2.3).

Reads ``<mevis_path>/<split>/meta_expressions.json`` (splits ``valid_u``, ``valid``, ``test``) and
``<split>/JPEGImages``; videos in sorted order. Long videos run in ``--sub_video_len`` sub-videos:
interleaved (every N-th frame) by default, each choosing its own query; contiguous with
``--no_sampling``, one query for the whole video. Output:
``<output_dir>/<split>/Annotations/<video>/<exp_id>/<frame>.png`` (what ``tools/evaluate.py
--protocol mevis --results <output_dir>/valid_u/Annotations`` reads). The CodaLab zip (``valid``,
``test``) holds ``<video>/<exp_id>/<frame>.png`` at the archive root.

``--legacy_mevis2024_subclips`` reproduces the original ``inference_mevis.py`` instead: each expression runs
with the sub-clip length the original's overwritten ``sub_video_len`` had reached by then
(``predict.base.legacy_mevis2024_lengths``, replayed from the meta file so ranks and resumed runs agree), and
``--no_sampling`` re-scores over the whole video even when it is one sub-clip, as the original did.
"""
from pathlib import Path
from typing import Dict, List, Optional

from rvos.predict.base import (VideoJob, Window, WindowPlan, check_frame_folder, legacy_mevis2024_lengths,
                               sub_video_windows)
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


def legacy_sub_video_plan(num_frames: int, lengths: List[int], contiguous: bool) -> WindowPlan:
    """The original's windows when expression i runs with sub-clip length ``lengths[i]``; expressions with the
    same length share their windows. Contiguous sub-clips always choose one query for the whole video."""
    windows = []
    for length in sorted(set(lengths)):
        expressions = [i for i, used in enumerate(lengths) if used == length]
        windows += [Window(positions, expressions)
                    for positions in sub_video_windows(num_frames, length, interleaved=not contiguous)]
    return WindowPlan(windows, video_query=contiguous)


class MeViSBenchmark(BinaryMaskBenchmark):
    name = "mevis"
    multi_object = True
    _legacy_lengths: Optional[Dict[str, List[int]]] = None

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
        if getattr(self.args, "legacy_mevis2024_subclips", False):
            return legacy_sub_video_plan(num_frames, self.legacy_lengths()[job.name], self.args.no_sampling)
        return sub_video_plan(job, num_frames, self.args.sub_video_len, self.args.no_sampling)

    def legacy_lengths(self) -> Dict[str, List[int]]:
        """Video name -> the sub-clip length of each expression in the original one-process (or
        ``--legacy_mevis2024_processes``) run over the whole split, from the meta file (computed once)."""
        if self._legacy_lengths is None:
            videos = read_meta_videos(self.root / self.split / "meta_expressions.json")
            names = sorted(videos)
            lengths = legacy_mevis2024_lengths(
                [(len(videos[n]["frames"]), len(videos[n]["expressions"])) for n in names], self.args.sub_video_len,
                interleaved=not self.args.no_sampling, processes=getattr(self.args, "legacy_mevis2024_processes", 1))
            self._legacy_lengths = dict(zip(names, lengths))
        return self._legacy_lengths

    def expression_dir(self, job: VideoJob, exp_id: str) -> Path:
        return self.output_root / "Annotations" / job.name / exp_id

    def zip_path(self) -> Path:
        return Path(self.args.output_dir) / f"submission_mevis_{self.split}.zip"
