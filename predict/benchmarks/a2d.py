"""A2D-Sentences inference (DATASETS.md §4.4), and the COCO-results writer it shares with JHMDB.

Every test sample (sentence, annotated frame) runs on the ``--num_frames`` window centred on its
frame (edge-padded), resized to 360 (long side at most 640) and padded to a multiple of 32 as the
evaluation loader; only the annotated frame is decoded. Each query's mask (x4 upsampling, sigmoid >
threshold, padding cropped, nearest resize to the frame size) becomes one COCO result
``{image_id, category_id 1, segmentation (RLE), score}``, as ``engine.evaluate_a2d``. Samples of the
same video share its decoded frames, and samples of the same frame share the backbone.

Output: ``<output_dir>/<split>/parts/<video>/<image_id>.json`` while running, merged into
``<output_dir>/<split>/predictions.json`` for ``tools/evaluate.py --protocol a2d --gt <a2d_path>
--predictions <output_dir>/test/predictions.json``.
"""
import json
import logging
from collections import Counter, OrderedDict
from pathlib import Path
from typing import Dict, List, Sequence

import torch

from rvos.datasets.a2d import ANNOTATION_FILES, a2d_image_id, read_single_frame_annotations
from rvos.datasets.base import normalize_caption
from rvos.datasets.clip_sampler import centred_window
from rvos.predict.base import Benchmark, Expression, Unit, VideoJob, Window, WindowPlan
from rvos.predict.postprocess import ExpressionOutput
from rvos.predict.writers import PredictionWriter, VideoOutput, write_atomic, write_json_atomic
from rvos.datasets.transforms_video import VAL_MAX_SIZE, VAL_SHORT_SIDE
from rvos.models.postprocess import A2DSentencesPostProcess

logger = logging.getLogger(__name__)

EVAL_SIZE_DIVISIBILITY = 32
PREDICTIONS_FILE = "predictions.json"
SPLIT_NAME = "test"


def coco_results(output: ExpressionOutput, image_id: str, threshold: float) -> List[dict]:
    """All queries of the decoded frame as COCO results (``A2DSentencesPostProcess``)."""
    outputs = {"pred_logits": output.logits[None], "pred_masks": output.masks[None]}
    result = A2DSentencesPostProcess(threshold)(outputs, torch.tensor([output.orig_size]),
                                                torch.tensor([output.input_size]))[0]
    return [{"image_id": image_id, "category_id": 1, "segmentation": rle, "score": float(score)}
            for score, rle in zip(result["scores"].tolist(), result["rle_masks"])]


class CocoResultsOutput(VideoOutput):
    def add(self, window: Window, exp: int, output: ExpressionOutput) -> None:
        image_id = self.job.expressions[exp].exp_id
        results = coco_results(output, image_id, self.writer.threshold)
        self.submit(write_json_atomic, self.writer.part_path(self.job, image_id), results)

    def commit(self) -> None:
        """Each sample's file is written atomically: nothing to rename."""

    def discard(self) -> None:
        """Complete sample files stay valid."""


class CocoResultsWriter(PredictionWriter):
    """One results file per sample (``parts/<video>/<image_id>.json``), merged by ``merge``."""

    def __init__(self, pool, threshold: float, output_root: Path):
        super().__init__(pool, threshold, None)
        self.output_root = Path(output_root)

    def part_path(self, job: VideoJob, image_id: str) -> Path:
        return self.output_root / "parts" / job.name / f"{image_id}.json"

    def units(self, job: VideoJob) -> List[Unit]:
        return [Unit(exp.exp_id, self.part_path(job, exp.exp_id), (i,)) for i, exp in enumerate(job.expressions)]

    def unit_complete(self, job: VideoJob, unit: Unit) -> bool:
        return unit.path.is_file()

    def open(self, job: VideoJob, units: Sequence[Unit], frame_names: Sequence[str]) -> VideoOutput:
        return CocoResultsOutput(self, job, units, frame_names)

    def merge(self, jobs: Sequence[VideoJob]) -> Path:
        """All samples' results, in job and sample order, into ``<output_root>/predictions.json``."""
        results = []
        for job in jobs:
            for unit in self.units(job):
                with open(unit.path, "r", encoding="utf-8") as handle:
                    results += json.load(handle)
        path = self.output_root / PREDICTIONS_FILE
        write_atomic(path, json.dumps(results).encode("utf-8"))
        logger.info("wrote %s (%d results)", path, len(results))
        return path


def centred_windows(job: VideoJob, num_frames: int, clip_len: int, first: int = 0) -> WindowPlan:
    """One window per annotated frame, centred on it: ``job.info['centres']`` holds each expression's centre
    frame (numbered from ``first``); window positions are 0-based."""
    by_centre: Dict[int, List[int]] = OrderedDict()
    for exp, centre in enumerate(job.info["centres"]):
        by_centre.setdefault(centre, []).append(exp)
    windows = []
    for centre, expressions in by_centre.items():
        last = first + num_frames - 1
        if not first <= centre <= last:
            raise ValueError(f"video {job.name}: annotated frame {centre} is outside its frames {first}..{last}")
        numbers = centred_window(centre, clip_len, first, last)
        windows.append(Window([n - first for n in numbers], expressions, keep=numbers.index(centre)))
    return WindowPlan(windows)


class CocoResultsBenchmark(Benchmark):
    """Shared by A2D and JHMDB: the evaluation resize and padding, the COCO-results writer, the merge."""

    size_divisibility = EVAL_SIZE_DIVISIBILITY
    short_side = VAL_SHORT_SIDE
    max_size = VAL_MAX_SIZE

    @property
    def split(self) -> str:
        return SPLIT_NAME

    def work(self, job: VideoJob, expressions: Sequence[int]) -> int:
        return len(expressions) * self.args.num_frames

    def make_writer(self, pool):
        if self.args.save_logits:
            logger.warning("--save_logits is ignored for %s: its results hold every query's mask already", self.name)
        return CocoResultsWriter(pool, self.args.threshold, self.output_root)

    def finish(self, jobs: Sequence[VideoJob]) -> None:
        CocoResultsWriter(None, self.args.threshold, self.output_root).merge(jobs)


class A2DBenchmark(CocoResultsBenchmark):
    name = "a2d"

    @property
    def root(self) -> Path:
        return Path(self.args.a2d_path)

    def jobs(self) -> List[VideoJob]:
        annotations = self.root / ANNOTATION_FILES["val"]
        samples = read_single_frame_annotations(annotations)
        counts = Counter(a2d_image_id(video, frame, instance) for _, video, frame, instance in samples)
        duplicates = sorted(image_id for image_id, count in counts.items() if count > 1)
        if duplicates:
            raise ValueError(f"{annotations}: image ids must be unique (one sentence per instance and frame), "
                             f"repeated: {duplicates[:5]}")
        videos_dir = self.root / "Release" / getattr(self.args, "a2d_clips_dir", "clips320H")
        grouped: Dict[str, List[tuple]] = {}
        for query, video_id, frame_idx, instance_id in samples:
            grouped.setdefault(video_id, []).append((query, frame_idx, instance_id))
        jobs = []
        for video_id in sorted(grouped):
            entries = grouped[video_id]
            expressions = [Expression(a2d_image_id(video_id, frame, instance), normalize_caption(query))
                           for query, frame, instance in entries]
            centres = [frame - 1 for _, frame, _ in entries]
            jobs.append(VideoJob(video_id, expressions, video_file=videos_dir / f"{video_id}.mp4",
                                 num_frames=len(set(centres)) * self.args.num_frames, info={"centres": centres}))
        return jobs

    def plan(self, job: VideoJob, num_frames: int) -> WindowPlan:
        return centred_windows(job, num_frames, self.args.num_frames)
