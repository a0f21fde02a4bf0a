"""Ref-DAVIS17 inference (DATASETS.md §2.3, the original ``inference_davis.py``).

Reads the converted ``meta_expressions/<split>/meta_expressions.json`` (split ``valid``) and
``<split>/JPEGImages``. Each sequence's expressions come in fours per object (annotator-1 first
frame, annotator-1 full video, annotator-2 first frame, annotator-2 full video), so object k owns
expressions 4k..4k+3 (a remainder is ignored, as the original's ``len // 4``). Videos run in
contiguous clips of ``--davis_clip_len`` frames (36), each clip choosing its query. For annotator
slot a, the objects' probabilities below the threshold are zeroed, a constant 0.1 background is
stacked in front and the argmax is written: pixel value k + 1 for object k.

Output: ``<output_dir>/<split>/anno_<a>/<sequence>/<i:05d>.png`` (palette PNGs, the DAVIS colour map,
i = frame position), ready for ``tools/evaluate.py --protocol refdavis --davis-root <davis_path>/DAVIS
--results <output_dir>/valid``.
"""
import logging
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np
import torch

from rvos.predict.base import Benchmark, Unit, VideoJob, Window, WindowPlan, check_frame_folder, contiguous_clips
from rvos.predict.postprocess import ExpressionOutput
from rvos.predict.writers import (PredictionWriter, VideoOutput, folder_complete, fresh_partial_dir,
                                      save_palette_png)
from rvos.predict.benchmarks.ytvos import expressions_of, read_meta_videos
from rvos.datasets.synthetic.formats import davis_palette

logger = logging.getLogger(__name__)

ANNOTATORS = 4
BACKGROUND_SCORE = 0.1
DEFAULT_CLIP_LEN = 36


def num_objects(job: VideoJob) -> int:
    return len(job.expressions) // ANNOTATORS


class DavisOutput(VideoOutput):
    """Combines, window by window, the probabilities of one annotator's objects into a label map."""

    def __init__(self, writer: "DavisWriter", job: VideoJob, units: Sequence[Unit], frame_names: Sequence[str]):
        super().__init__(writer, job, units, frame_names)
        self.partials = {int(unit.key): fresh_partial_dir(unit.path) for unit in units}
        self.waiting: Dict[tuple, Dict[int, torch.Tensor]] = {}

    def add(self, window: Window, exp: int, output: ExpressionOutput) -> None:
        annotator, obj = exp % ANNOTATORS, exp // ANNOTATORS
        key = (tuple(window.positions), annotator)
        self.waiting.setdefault(key, {})[obj] = output.probabilities()
        self.keep_logits(window, exp, output)
        if len(self.waiting[key]) == num_objects(self.job):
            self._write_labels(window, annotator, self.waiting.pop(key))

    def _write_labels(self, window: Window, annotator: int, probs: Dict[int, torch.Tensor]) -> None:
        stacked = torch.stack([probs[k] for k in range(len(probs))])
        stacked[stacked < self.writer.threshold] = 0.0
        background = torch.full_like(stacked[:1], BACKGROUND_SCORE)
        labels = torch.argmax(torch.cat([background, stacked]), dim=0).to(torch.uint8).cpu().numpy()
        folder = self.partials[annotator]
        for label_map, position in zip(labels, window.positions):
            self.submit(save_palette_png, folder / f"{position:05d}.png", label_map, self.writer.palette)


class DavisWriter(PredictionWriter):
    """One unit per (sequence, annotator slot): ``anno_<a>/<sequence>``."""

    def __init__(self, pool, threshold: float, output_root: Path, logits_root=None):
        super().__init__(pool, threshold, logits_root)
        self.output_root = Path(output_root)
        self.palette = davis_palette()

    def units(self, job: VideoJob) -> List[Unit]:
        count = num_objects(job)
        return [Unit(str(a), self.output_root / f"anno_{a}" / job.name,
                     tuple(ANNOTATORS * k + a for k in range(count))) for a in range(ANNOTATORS)]

    def unit_complete(self, job: VideoJob, unit: Unit) -> bool:
        names = [f"{i:05d}.png" for i in range(job.num_frames)]
        return folder_complete(unit.path, names) and self.logits_complete(job, unit)

    def order(self, job: VideoJob, expressions: Sequence[int]) -> List[int]:
        return sorted(expressions, key=lambda e: (e % ANNOTATORS, e // ANNOTATORS))

    def open(self, job: VideoJob, units: Sequence[Unit], frame_names: Sequence[str]) -> VideoOutput:
        return DavisOutput(self, job, units, frame_names)


class DavisBenchmark(Benchmark):
    name = "davis"

    @property
    def root(self) -> Path:
        return Path(self.args.davis_path)

    def jobs(self) -> List[VideoJob]:
        meta = self.root / "meta_expressions" / self.split / "meta_expressions.json"
        videos = read_meta_videos(meta)
        frames_root = self.root / self.split / "JPEGImages"
        jobs = []
        for name, entry in videos.items():
            expressions = expressions_of(entry)
            info = {}
            if len(expressions) < ANNOTATORS:
                info["invalid"] = (f"{meta}: sequence {name!r} has {len(expressions)} expressions; Ref-DAVIS17 "
                                   f"needs {ANNOTATORS} per object")
            elif len(expressions) % ANNOTATORS:
                logger.warning("%s: sequence %s has %d expressions, not a multiple of %d; the last %d are ignored "
                               "(as the original)", meta, name, len(expressions), ANNOTATORS,
                               len(expressions) % ANNOTATORS)
            frames = sorted(entry["frames"])
            jobs.append(VideoJob(name, expressions[:ANNOTATORS * (len(expressions) // ANNOTATORS)],
                                 frame_files=check_frame_folder(name, frames_root / name, frames, ".jpg"),
                                 frame_names=frames, info=info))
        return jobs

    def plan(self, job: VideoJob, num_frames: int) -> WindowPlan:
        expressions = list(range(len(job.expressions)))
        return WindowPlan([Window(positions, expressions)
                           for positions in contiguous_clips(num_frames, self.args.davis_clip_len)])

    def make_writer(self, pool):
        logits = self.output_root / "logits" if self.args.save_logits else None
        return DavisWriter(pool, self.args.threshold, self.output_root, logits)

    def given_mask_path(self, root: Path, job: VideoJob, exp: int, position: int, frame_name: str) -> Path:
        """``<root>/anno_<a>/<sequence>/<position:05d>.png`` for annotator slot a = exp % 4 (this benchmark's output)."""
        return Path(root) / f"anno_{exp % ANNOTATORS}" / job.name / f"{position:05d}.png"

    def given_mask(self, label_map: np.ndarray, exp: int) -> np.ndarray:
        """Object k = exp // 4 is label k + 1."""
        return label_map == exp // ANNOTATORS + 1
