"""Benchmarks whose predictions are one folder of binary PNGs per expression (Ref-YouTube-VOS, MeViS,
custom videos): the writer, the submission entries and the ``--visualize`` overlays they share."""
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from rvos.predict.base import Benchmark, VideoJob
from rvos.predict.overlay import overlay_job
from rvos.predict.submission import SubmissionEntry, binary_mask_entries
from rvos.predict.writers import BinaryMaskWriter
from rvos.util.video_io import DEFAULT_FPS

OVERLAY_FOLDER = "overlays"
BINARY_FOREGROUND = 255


class BinaryMaskBenchmark(Benchmark):
    """Subclasses give ``expression_dir`` and, for a submission, ``submission_root`` and ``zip_path``."""

    submission_root = ""

    def expression_dir(self, job: VideoJob, exp_id: str) -> Path:
        raise NotImplementedError

    def given_mask_path(self, root: Path, job: VideoJob, exp: int, position: int, frame_name: str) -> Path:
        """``<root>/<video>/<exp_id>/<frame>.png`` (``Annotations/`` of a submission, or this benchmark's output)."""
        return Path(root) / job.name / job.expressions[exp].exp_id / f"{frame_name}.png"

    def given_mask(self, label_map: np.ndarray, exp: int) -> np.ndarray:
        """Foreground = 255 exactly, as the original key-frame script reads its ``Annotations/``."""
        return label_map == BINARY_FOREGROUND

    def make_writer(self, pool):
        logits = self.output_root / "logits" if self.args.save_logits else None
        return BinaryMaskWriter(pool, self.args.threshold, self.expression_dir, logits)

    def submission_entries(self, jobs: Sequence[VideoJob], predictions: bool = True) -> Iterator[SubmissionEntry]:
        return binary_mask_entries(jobs, self.expression_dir if predictions else None, self.submission_root)

    def overlay_path(self, job: VideoJob) -> Path:
        return self.output_root / OVERLAY_FOLDER / f"{job.name}.{self.args.overlay}"

    def overlay_fps(self, job: VideoJob) -> float:
        return DEFAULT_FPS

    def finish(self, jobs: Sequence[VideoJob]) -> None:
        """With ``--visualize``: one overlay per video (``<output_root>/overlays/<video>.mp4``)."""
        if self.args.visualize:
            for job in jobs:
                overlay_job(job, self.expression_dir, self.overlay_path(job), self.overlay_fps(job))
