"""DAVIS-2017 J&F evaluation, as davis2017-evaluation ``DAVISEvaluation`` and ReferFormer's ``eval_davis.py``.

Behaviour reproduced from the official code (shared/reference/metrics/SPEC.md sections 3-4):

* Frames are the sorted ``<root>/JPEGImages/<res>/<seq>/*.jpg``; GT masks are the index PNGs of
  ``Annotations_unsupervised`` (task "unsupervised") or ``Annotations`` (task "semi-supervised").
* GT value 255 is void: it is background for the object masks and, in the unsupervised task only, the void
  pixels of each frame are removed from J and from both boundary maps (the semi-supervised task passes no void).
* The number of GT objects K is the largest id in the first GT frame; object k is ``value == k``.
* Predictions are index PNGs ``<results>/<seq>/<frame>.png``; proposal p is ``value == p`` for p = 1..P,
  P = largest value over the evaluated frames.
* unsupervised: J and F on all frames for every (proposal, object) pair; at most 20 proposals; missing ones are
  empty; Hungarian matching on (mean J + mean F) / 2; matched pairs are listed in proposal order and labelled
  ``<seq>_1 .. <seq>_K`` in that order (official quirk; each row also records its true ``gt_object``).
* semi-supervised: the first and last frames are dropped and proposal k is evaluated against object k; more
  proposals than objects is an error, missing ones are empty.
* Per object: mean, recall and decay (``sequence_statistics``); global rows average over all objects, and
  J&F-Mean = (J-Mean + F-Mean) / 2.

Where the official script prints a message and exits (missing PNG, more than 20 proposals, wrong object count)
this module raises an error naming the file or sequence. It never reuses stale CSVs: results are recomputed.
"""
import csv
import logging
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image
from scipy.optimize import linear_sum_assignment
from tqdm import tqdm

from rvos.evaluation.report import TABLE_COLUMNS, format_table
from rvos.evaluation.metrics import DEFAULT_BOUND_TH, region_and_boundary

logger = logging.getLogger(__name__)

TASKS = ("unsupervised", "semi-supervised")
VOID_LABEL = 255
MAX_PROPOSALS = 20
GLOBAL_COLUMNS = ("J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay")
_DECAY_BINS = 4


@dataclass(frozen=True)
class SequenceStatistics:
    """Official per-object statistics of per-frame values: mean, recall (fraction > 0.5) and decay."""

    mean: float
    recall: float
    decay: float


def sequence_statistics(values: Sequence[float]) -> SequenceStatistics:
    """davis2017 ``db_statistics`` of per-frame values [N].

    * mean = nanmean(values); recall = mean(values > 0.5), where a NaN counts as a miss;
    * decay = nanmean(first quarter) - nanmean(last quarter), over 4 overlapping inclusive bins whose bounds are
      ``round(linspace(1, N, 5) + 1e-10) - 1``. The official code stores the bounds, and the bound + 1 used as the
      slice end, as uint8 and so wraps them modulo 256: decay is exact for N <= 255 and NaN or computed from the
      wrong frames above (the x86 cast, reproduced here on every platform).
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or len(values) == 0:
        raise ValueError(f"sequence_statistics needs a non-empty 1-D array of per-frame values, got {values.shape}")
    bounds = (np.round(np.linspace(1, len(values), _DECAY_BINS + 1) + 1e-10) - 1).astype(np.int64) % 256
    bins = [values[bounds[i]:(bounds[i + 1] + 1) % 256] for i in range(_DECAY_BINS)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        mean = float(np.nanmean(values))
        decay = float(np.nanmean(bins[0]) - np.nanmean(bins[-1]))
    return SequenceStatistics(mean=mean, recall=float(np.mean(values > 0.5)), decay=decay)


def read_index_png(path: Path) -> np.ndarray:
    """Index PNG -> [H, W] integer array of palette indices (P mode) or gray values (L mode), as PIL reads it."""
    if not path.is_file():
        raise FileNotFoundError(f"mask PNG not found: {path}")
    with Image.open(path) as image:
        array = np.array(image)
        mode = image.mode
    if array.ndim != 2:
        raise ValueError(f"{path}: expected a single-channel index PNG (P or L mode), got mode {mode} "
                         f"with shape {array.shape}")
    return array


def sequence_names(davis_root: Path, subset: str) -> List[str]:
    """Sequence names listed in ``<root>/ImageSets/2017/<subset>.txt``, in file order."""
    path = Path(davis_root) / "ImageSets" / "2017" / f"{subset}.txt"
    if not path.is_file():
        raise FileNotFoundError(f"DAVIS sequence list not found: {path}")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def load_ground_truth(davis_root: Path, sequence: str, task: str, resolution: str = "480p"
                      ) -> Tuple[List[str], np.ndarray, np.ndarray, int]:
    """GT of one sequence -> (frame names [T], object ids [T, H, W], void bool [T, H, W], object count K).

    Void pixels (255) get id 0. K is the largest id of the first frame: larger ids appearing later are ignored,
    as officially.
    """
    davis_root = Path(davis_root)
    image_dir = davis_root / "JPEGImages" / resolution / sequence
    mask_dir = davis_root / ("Annotations_unsupervised" if task == "unsupervised" else "Annotations") \
        / resolution / sequence
    n_images = len(list(image_dir.glob("*.jpg")))
    if n_images == 0:
        raise FileNotFoundError(f"no JPEG frames for sequence {sequence} in {image_dir}")
    mask_paths = sorted(mask_dir.glob("*.png"))
    if len(mask_paths) != n_images:
        raise FileNotFoundError(f"{mask_dir}: {len(mask_paths)} annotation PNGs for {n_images} JPEG frames in "
                                f"{image_dir}; every frame needs a GT PNG")
    labels = read_label_stack(mask_paths)
    void = labels == VOID_LABEL
    labels[void] = 0
    return [path.stem for path in mask_paths], labels, void, int(labels[0].max())


def read_label_stack(paths: Sequence[Path], frame_shape: Optional[Tuple[int, int]] = None) -> np.ndarray:
    """Index PNGs -> ids [T, H, W]; every frame must have ``frame_shape`` (default: the first frame's)."""
    frames = []
    for path in paths:
        frame = read_index_png(path)
        frame_shape = frame.shape if frame_shape is None else tuple(frame_shape)
        if frame.shape != frame_shape:
            raise ValueError(f"{path}: mask is {frame.shape[1]}x{frame.shape[0]} (WxH) but the sequence frames are "
                             f"{frame_shape[1]}x{frame_shape[0]}")
        frames.append(frame)
    return np.stack(frames)


def match_unsupervised(gt_labels: np.ndarray, n_objects: int, pred_labels: np.ndarray, void: np.ndarray,
                       sequence: str, bound_th: float = DEFAULT_BOUND_TH
                       ) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Hungarian matching of the predicted proposals (ids 1..P of pred_labels [T, H, W]) to the GT objects
    (ids 1..K of gt_labels [T, H, W]), void pixels [T, H, W] excluded. Missing proposals (P < K) are empty.

    Returns per-frame J [K, T] and F [K, T] of the matched pairs in proposal order (the official order), with the
    matched proposal ids [K] and GT object ids [K].
    """
    n_proposals = int(pred_labels.max())
    if n_proposals > MAX_PROPOSALS:
        raise ValueError(f"{sequence}: predictions hold proposal id {n_proposals}, more than the "
                         f"{MAX_PROPOSALS} proposals the DAVIS unsupervised protocol allows (0/255 masks?)")
    n_proposals = max(n_proposals, n_objects)
    jaccard = np.zeros((n_proposals, n_objects, len(gt_labels)))
    boundary = np.zeros_like(jaccard)
    for k in range(n_objects):
        gt_object = gt_labels == k + 1
        for p in range(n_proposals):
            jaccard[p, k], boundary[p, k] = region_and_boundary(gt_object, pred_labels == p + 1, void, bound_th)
    cost = (np.mean(jaccard, axis=2) + np.mean(boundary, axis=2)) / 2
    proposal_index, object_index = linear_sum_assignment(-cost)
    return (jaccard[proposal_index, object_index], boundary[proposal_index, object_index],
            proposal_index + 1, object_index + 1)


def evaluate_semisupervised(gt_labels: np.ndarray, n_objects: int, pred_labels: np.ndarray, sequence: str,
                            bound_th: float = DEFAULT_BOUND_TH) -> Tuple[np.ndarray, np.ndarray]:
    """Per-frame J [K, T] and F [K, T] of predicted id k against GT object k (a missing id is an empty mask)."""
    if pred_labels.max() > n_objects:
        raise ValueError(f"{sequence}: predictions hold object id {pred_labels.max()} but the first GT frame has "
                         f"only {n_objects} objects (semi-supervised protocol)")
    jaccard, boundary = np.zeros((n_objects, len(gt_labels))), np.zeros((n_objects, len(gt_labels)))
    for k in range(n_objects):
        jaccard[k], boundary[k] = region_and_boundary(gt_labels == k + 1, pred_labels == k + 1, bound_th=bound_th)
    return jaccard, boundary


def evaluate_davis(davis_root: Path, results_dir: Path, task: str = "unsupervised", subset: str = "val",
                   sequences: Optional[Sequence[str]] = None, resolution: str = "480p",
                   bound_th: float = DEFAULT_BOUND_TH) -> Dict:
    """DAVIS-2017 J&F of the index PNGs in ``results_dir`` against ``davis_root``.

    Returns ``{"task", "subset", "global": {column: value}, "per_object": {"<seq>_<i>": {...}}}`` where each
    per-object entry holds J-/F- Mean, Recall and Decay, its ``gt_object`` id and its ``proposal`` id.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise FileNotFoundError(f"results folder not found: {results_dir}")
    names = list(sequences) if sequences is not None else sequence_names(davis_root, subset)
    per_object: Dict[str, Dict] = {}
    for sequence in tqdm(names, desc=f"DAVIS {task} {results_dir.name}", leave=False):
        frame_names, gt_labels, void, n_objects = load_ground_truth(davis_root, sequence, task, resolution)
        if task == "semi-supervised":
            frame_names, gt_labels = frame_names[1:-1], gt_labels[1:-1]
        pred_labels = read_label_stack([results_dir / sequence / f"{name}.png" for name in frame_names],
                                       gt_labels.shape[1:])
        if task == "unsupervised":
            jaccard, boundary, proposal_ids, object_ids = match_unsupervised(
                gt_labels, n_objects, pred_labels, void, sequence, bound_th)
        else:
            jaccard, boundary = evaluate_semisupervised(gt_labels, n_objects, pred_labels, sequence, bound_th)
            proposal_ids = object_ids = np.arange(1, n_objects + 1)
        for row in range(n_objects):
            j_stats, f_stats = sequence_statistics(jaccard[row]), sequence_statistics(boundary[row])
            per_object[f"{sequence}_{row + 1}"] = {
                "sequence": sequence, "gt_object": int(object_ids[row]), "proposal": int(proposal_ids[row]),
                "J-Mean": j_stats.mean, "J-Recall": j_stats.recall, "J-Decay": j_stats.decay,
                "F-Mean": f_stats.mean, "F-Recall": f_stats.recall, "F-Decay": f_stats.decay,
            }
    results = {"task": task, "subset": subset, "global": global_statistics(per_object), "per_object": per_object}
    logger.info("%s", format_table(f"DAVIS {task} {subset}: {results_dir}", {"global": results["global"]},
                                   TABLE_COLUMNS["davis"]))
    return results


def global_statistics(per_object: Dict[str, Dict]) -> Dict[str, float]:
    """Official global rows: the mean over all (sequence, object) units of each per-object statistic."""
    if not per_object:
        raise ValueError("no object was evaluated")
    rows = list(per_object.values())
    means = {column: float(np.mean([row[column] for row in rows])) for column in GLOBAL_COLUMNS[1:]}
    return {"J&F-Mean": (means["J-Mean"] + means["F-Mean"]) / 2, **means}


def write_davis_csvs(results: Dict, out_dir: Path, float_format: str = "%.5f") -> Tuple[Path, Path]:
    """Write ``global_results-<subset>.csv`` and ``per-sequence_results-<subset>.csv`` as ReferFormer does."""
    out_dir = Path(out_dir)
    global_path = out_dir / f"global_results-{results['subset']}.csv"
    per_sequence_path = out_dir / f"per-sequence_results-{results['subset']}.csv"

    def fmt(value: float) -> str:
        return "" if math.isnan(value) else float_format % value

    with open(global_path, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(GLOBAL_COLUMNS)
        writer.writerow([fmt(results["global"][column]) for column in GLOBAL_COLUMNS])
    with open(per_sequence_path, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["Sequence", "J-Mean", "F-Mean"])
        for name, row in results["per_object"].items():
            writer.writerow([name, fmt(row["J-Mean"]), fmt(row["F-Mean"])])
    return global_path, per_sequence_path
