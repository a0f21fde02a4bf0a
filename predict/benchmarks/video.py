"""Inference on one's own video: ``inference.py --video FILE_OR_FOLDER --text "..." [--text "..."]``.

The video is a file PyAV decodes (mp4, webm, gif, ...) or a folder of frames (sorted by file name). Each
``--text`` is an expression (lower-cased and whitespace-normalised as in training), ``exp_id`` its
position (``0``, ``1``, ...). Long videos run in ``--sub_video_len`` sub-videos (interleaved, or
contiguous with ``--no_sampling``), so memory stays bounded.

Output: ``<output_dir>/<video>/<exp_id>/<frame>.png`` ({0, 255}, original size; frames named after
the image files, or ``00000, 00001, ...`` for a video file) and an overlay with one colour per
expression, ``<output_dir>/<video>_overlay.mp4`` (``--overlay gif``: an animated GIF).
"""
from pathlib import Path
from typing import List, Sequence

from rvos.datasets.base import normalize_caption
from rvos.datasets.sentences import expression_text
from rvos.predict.base import Expression, VideoJob, WindowPlan
from rvos.predict.benchmarks.binary import BinaryMaskBenchmark
from rvos.predict.benchmarks.mevis import sub_video_plan
from rvos.predict.overlay import overlay_job
from rvos.util.video_io import (DEFAULT_FPS, VIDEO_EXTENSIONS, count_video_frames, is_video_file, list_frame_files,
                                video_fps)


def custom_expressions(texts: Sequence[str], source: str = "--text") -> List[Expression]:
    """The expressions of a custom video: each text lower-cased and whitespace-normalised as in training,
    ``exp_id`` its position; an empty text is an error naming ``source`` and its position."""
    if not texts:
        raise ValueError("a custom video needs at least one expression")
    return [Expression(str(i), normalize_caption(expression_text(text, source, f"expression {i}")))
            for i, text in enumerate(texts)]


def video_job(source: Path, texts: Sequence[str]) -> VideoJob:
    """The job of a video file (PyAV: mp4, webm, gif, ...; frames ``00000, 00001, ...``) or a folder of frames
    (image files in name order, named after them) with ``texts`` as its expressions."""
    source = Path(source)
    expressions = custom_expressions(texts)
    if source.is_dir():
        files = list_frame_files(source)
        return VideoJob(source.name, expressions, frame_files=files, frame_names=[f.stem for f in files])
    if not source.is_file():
        raise FileNotFoundError(f"{source}: no such video file or frame folder")
    if not is_video_file(source):
        raise ValueError(f"{source}: not a video file (by extension: {', '.join(VIDEO_EXTENSIONS)}) nor a folder "
                         "of frames")
    count = count_video_frames(source)
    return VideoJob(source.stem, expressions, video_file=source, frame_names=[f"{i:05d}" for i in range(count)],
                    num_frames=count)


class VideoBenchmark(BinaryMaskBenchmark):
    name = "video"

    @property
    def source(self) -> Path:
        return Path(self.args.video)

    @property
    def split(self) -> str:
        """No split: the video's file or folder name (in messages)."""
        return self.source.name

    @property
    def output_root(self) -> Path:
        return Path(self.args.output_dir)

    def jobs(self) -> List[VideoJob]:
        if not self.args.text:
            raise ValueError("--video needs at least one --text \"expression\"")
        return [video_job(self.source, self.args.text)]

    def plan(self, job: VideoJob, num_frames: int) -> WindowPlan:
        return sub_video_plan(job, num_frames, self.args.sub_video_len, self.args.no_sampling)

    def expression_dir(self, job: VideoJob, exp_id: str) -> Path:
        return self.output_root / job.name / exp_id

    def overlay_path(self, job: VideoJob) -> Path:
        return self.output_root / f"{job.name}_overlay.{self.args.overlay}"

    def overlay_fps(self, job: VideoJob) -> float:
        return video_fps(job.video_file) if job.video_file is not None else DEFAULT_FPS

    def finish(self, jobs: Sequence[VideoJob]) -> None:
        """The overlay of every video (always, not only with ``--visualize``)."""
        for job in jobs:
            overlay_job(job, self.expression_dir, self.overlay_path(job), self.overlay_fps(job))
