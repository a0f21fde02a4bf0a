"""Per-expression J&F of Ref-YouTube-VOS-layout predictions against ground-truth PNG folders.

The real valid/test splits are scored by the challenge server; this scores splits whose ground
truth is on disk as ``<gt_dir>/<video>/<exp_id>/<frame>.png`` (the synthetic world's held-out
``_synthetic_gt/<split>/Annotations``), with the MeViS rule: J and F averaged over a video's
frames per expression, then over expressions.
"""
import logging
from pathlib import Path
from typing import Dict, Iterable, Mapping, Optional

import numpy as np

from rvos.datasets.base import read_json
from rvos.evaluation.mevis import PredictionError, read_prediction_png
from rvos.evaluation.report import TABLE_COLUMNS, format_table
from rvos.evaluation.metrics import DEFAULT_BOUND_TH, region_and_boundary

logger = logging.getLogger(__name__)


def score_expression(gt_dir: Path, pred_dir: Path, frames: Iterable[str], bound_th: float = DEFAULT_BOUND_TH):
    """Mean J and F over ``frames`` of one expression folder pair."""
    gt = np.stack([read_prediction_png(gt_dir / f"{name}.png") for name in frames])
    pred = np.stack([read_prediction_png(pred_dir / f"{name}.png", gt.shape[1:]) for name in frames])
    jaccard, boundary = region_and_boundary(gt, pred, bound_th=bound_th)
    return float(jaccard.mean()), float(boundary.mean())


def evaluate_expression_folders(meta_path: Path, gt_root: Path, pred_root: Path,
                                videos: Optional[Iterable[str]] = None, bound_th: float = DEFAULT_BOUND_TH) -> Dict:
    """Score every expression of ``meta_path`` (a meta_expressions.json) whose video has ground truth (``bound_th``:
    the boundary F tolerance, a fraction of the diagonal if < 1, else pixels).

    Returns ``{"J&F", "J", "F", "n_expressions", "per_expression": {"<video>/<exp_id>": [J, F]}}``. A missing
    prediction PNG raises PredictionError naming it.
    """
    meta = read_json(Path(meta_path))["videos"]
    selected = set(videos) if videos is not None else None
    per_expression = {}
    without_gt = []
    for video, entry in meta.items():
        if selected is not None and video not in selected:
            continue
        if not (Path(gt_root) / video).is_dir():
            without_gt.append(video)
            continue
        for exp_id in entry["expressions"]:
            pred_dir = Path(pred_root) / video / exp_id
            if not pred_dir.is_dir():
                raise PredictionError(f"prediction folder not found: {pred_dir}")
            per_expression[f"{video}/{exp_id}"] = list(score_expression(Path(gt_root) / video / exp_id, pred_dir,
                                                                        entry["frames"], bound_th))
    if not per_expression:
        raise ValueError(f"no expression of {meta_path} has ground truth under {gt_root}")
    if without_gt:
        logger.info("%d videos of %s have no ground-truth folder under %s, not scored (e.g. %s)", len(without_gt),
                    meta_path, gt_root, ", ".join(without_gt[:3]))
    return summarise(per_expression, title=f"{pred_root}")


def summarise(per_expression: Mapping[str, list], title: str = "") -> Dict:
    """J, F, J&F means over a {key: [J, F]} mapping."""
    scores = np.array(list(per_expression.values()), dtype=np.float64)
    jaccard, boundary = float(scores[:, 0].mean()), float(scores[:, 1].mean())
    results = {"J&F": (jaccard + boundary) / 2, "J": jaccard, "F": boundary, "n_expressions": len(scores),
               "per_expression": dict(per_expression)}
    if title:
        logger.info("%s", format_table(f"{title} ({len(scores)} expressions)", {"all": results}, TABLE_COLUMNS["mevis"]))
    return results
