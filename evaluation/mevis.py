"""MeViS ``valid_u`` J&F, as henghuiding/MeViS ``tools/eval_mevis.py`` computes it.

Behaviour reproduced (shared/reference/metrics/SPEC.md section 5):

* GT of an expression and frame: the union of the decoded COCO RLEs ``mask_dict[str(anno_id)][frame_index]`` of
  all its ``anno_id`` (``null`` = object absent); a frame without any target has an empty GT.
* Prediction: ``<pred_dir>/<video>/<exp_id>/<frame>.png`` read as 8-bit grayscale with cv2; any nonzero value is
  foreground (so 0/255, 0/1 and palette PNGs all work; 16-bit PNGs are reduced to 8 bits, as officially).
* Per expression: J and F are the means over all the video's frames of the DAVIS per-frame J and F (no void);
  frames where GT and prediction are both empty count 1.
* Dataset: J and F are plain means over expressions (in meta order here: the official mean in worker completion
  order can differ in the last ulps) and J&F = (J + F) / 2.
* A video folder missing from the predictions scores J = F = 0 for all its expressions, which are averaged in
  (official behaviour; logged as a warning).

Other broken predictions (missing expression folder or frame PNG, unreadable PNG, size different from the GT)
raise ``PredictionError`` naming the file. The official script instead loses the expression silently (its worker
crashes) and averages over the rest: ``drop_broken_expressions=True`` reproduces that and logs what was dropped.
The frame size comes from the GT RLEs (the official script reads it from a hard-coded ``00000.png``; here the
first listed frame's PNG is used only when an expression has no RLE at all).
"""
import logging
import multiprocessing
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
from tqdm import tqdm

from rvos.datasets.base import read_json
from rvos.evaluation.report import TABLE_COLUMNS, format_table
from rvos.util.rle import decode_rles
from rvos.evaluation.metrics import DEFAULT_BOUND_TH, region_and_boundary

logger = logging.getLogger(__name__)


class PredictionError(ValueError):
    """A prediction file is missing, unreadable or of the wrong size."""


def read_prediction_png(path: Path, shape: Optional[Tuple[int, int]] = None) -> np.ndarray:
    """Prediction PNG -> bool [H, W] (nonzero 8-bit grayscale), checked against ``shape`` (H, W) when given."""
    if not path.is_file():
        raise PredictionError(f"prediction PNG not found: {path}")
    gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if gray is None:
        raise PredictionError(f"cannot read prediction PNG: {path}")
    if shape is not None and gray.shape != tuple(shape):
        raise PredictionError(f"{path}: prediction is {gray.shape[1]}x{gray.shape[0]} (WxH) but the ground truth "
                              f"is {shape[1]}x{shape[0]}")
    return gray != 0


def expression_ground_truth(rles_per_object: Sequence[Sequence[Optional[dict]]], n_frames: int,
                            shape: Optional[Tuple[int, int]], names: Optional[Sequence[str]] = None) -> np.ndarray:
    """Union over objects of the per-frame RLEs -> bool [T, H, W].

    rles_per_object: for each anno_id, its list of T RLE dicts or None. ``shape`` (H, W) is used when no RLE
    gives the size (every target absent in every frame). ``names`` says where each object's RLEs come from
    (e.g. ``mask_dict.json (anno_id 3)``): every RLE is checked before it is decoded (``util.rle``) and a bad
    one is an error naming it and its frame.
    """
    names = list(names) if names is not None else [f"object {index}" for index in range(len(rles_per_object))]
    sizes = {tuple(rle["size"]) for rles in rles_per_object for rle in rles if isinstance(rle, dict) and "size" in rle}
    if len(sizes) > 1:
        raise ValueError(f"{', '.join(names)}: RLE sizes differ within one video: {sorted(sizes)}")
    if sizes:
        shape = sizes.pop()
    if shape is None:
        raise ValueError("no RLE and no prediction size: cannot size the ground truth")
    gt = np.zeros((n_frames, *shape), dtype=bool)
    for rles, name in zip(rles_per_object, names):
        if len(rles) != n_frames:
            raise ValueError(f"{name}: mask_dict lists {len(rles)} frames for an object of a video with {n_frames} "
                             "frames")
        present = [index for index, rle in enumerate(rles) if rle is not None]
        if present:
            gt[present] |= decode_rles([rles[index] for index in present],
                                       [f"{name}, frame {index}" for index in present])
    return gt


def _expression_task(video: str, exp_id: str, frames: Sequence[str], rles_per_object, names: Sequence[str],
                     pred_dir: Path, bound_th: float) -> Tuple[str, Optional[List[float]], Optional[str]]:
    """Score one expression -> (key, [J, F] or None, error message or None). Runs in worker processes."""
    key = f"{video}_{exp_id}"
    try:
        expression_dir = pred_dir / video / exp_id
        if not expression_dir.is_dir():
            raise PredictionError(f"prediction folder not found: {expression_dir}")
        first = read_prediction_png(expression_dir / f"{frames[0]}.png")
        gt = expression_ground_truth(rles_per_object, len(frames), first.shape, names)
        pred = np.stack([read_prediction_png(expression_dir / f"{name}.png", gt.shape[1:]) for name in frames])
    except PredictionError as error:
        return key, None, str(error)
    jaccard, boundary = region_and_boundary(gt, pred, bound_th=bound_th)
    return key, [float(jaccard.mean()), float(boundary.mean())], None


def _run_task(task):
    return _expression_task(*task)


def evaluate_mevis(meta_path: Path, mask_dict_path: Path, pred_dir: Path, workers: int = 1,
                   drop_broken_expressions: bool = False, bound_th: float = DEFAULT_BOUND_TH) -> Dict:
    """J, F and J&F of the predictions in ``pred_dir`` against MeViS-style ``meta_expressions.json`` and
    ``mask_dict.json``.

    Returns ``{"J", "F", "J&F", "n_expressions", "per_expression": {"<video>_<exp_id>": [J, F]},
    "missing_videos": [...], "dropped_expressions": {key: reason}}``. ``workers`` > 1 scores expressions in a
    multiprocessing pool.
    """
    meta_path, mask_dict_path, pred_dir = Path(meta_path), Path(mask_dict_path), Path(pred_dir)
    if not pred_dir.is_dir():
        raise FileNotFoundError(f"prediction folder not found: {pred_dir}")
    videos = read_json(meta_path).get("videos")
    if not isinstance(videos, dict):
        raise ValueError(f"{meta_path}: no 'videos' mapping (is this a meta_expressions.json?)")
    mask_dict = read_json(mask_dict_path)

    per_expression: Dict[str, List[float]] = {}
    missing_videos, tasks = [], []
    for video, entry in videos.items():
        if not (pred_dir / video).is_dir():
            missing_videos.append(video)
            logger.warning("%s not found in %s: its %d expressions score J = F = 0 (official behaviour)",
                           video, pred_dir, len(entry["expressions"]))
        for exp_id, expression in entry["expressions"].items():
            key = f"{video}_{exp_id}"
            if video in missing_videos:
                per_expression[key] = [0.0, 0.0]
                continue
            per_expression[key] = None
            rles = [_object_rles(mask_dict, anno_id, mask_dict_path) for anno_id in expression["anno_id"]]
            names = [f"{mask_dict_path} (anno_id {anno_id})" for anno_id in expression["anno_id"]]
            tasks.append((video, exp_id, entry["frames"], rles, names, pred_dir, bound_th))

    dropped: Dict[str, str] = {}
    for key, scores, error in _map(tasks, workers):
        if error is None:
            per_expression[key] = scores
        elif drop_broken_expressions:
            dropped[key] = error
            logger.warning("dropping expression %s from the average: %s", key, error)
        else:
            raise PredictionError(error)
    per_expression = {key: scores for key, scores in per_expression.items() if key not in dropped}
    if not per_expression:
        raise ValueError("no expression could be scored")
    scores = np.array(list(per_expression.values()))
    jaccard, boundary = float(np.mean(scores[:, 0])), float(np.mean(scores[:, 1]))
    results = {"J&F": (jaccard + boundary) / 2, "J": jaccard, "F": boundary, "n_expressions": len(per_expression),
               "per_expression": per_expression, "missing_videos": missing_videos, "dropped_expressions": dropped}
    logger.info("%s", format_table(f"MeViS {pred_dir} ({len(per_expression)} expressions)", {"all": results},
                                   TABLE_COLUMNS["mevis"]))
    return results


def _map(tasks: list, workers: int):
    """Yield task results in task order, in a pool of ``workers`` processes when workers > 1."""
    progress = dict(total=len(tasks), desc="MeViS expressions", leave=False)
    if workers <= 1 or len(tasks) <= 1:
        yield from tqdm(map(_run_task, tasks), **progress)
        return
    with multiprocessing.Pool(min(workers, len(tasks))) as pool:
        yield from tqdm(pool.imap(_run_task, tasks, chunksize=4), **progress)


def _object_rles(mask_dict: Dict, anno_id, mask_dict_path: Path) -> list:
    rles = mask_dict.get(str(anno_id))
    if rles is None:
        raise ValueError(f"{mask_dict_path}: no entry for anno_id {anno_id}")
    return rles
