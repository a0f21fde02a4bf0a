"""Ref-DAVIS17: the DAVIS-2017 unsupervised evaluation of each annotator run, and their mean.

Inference writes one index-PNG folder per annotator slot, ``<results_root>/anno_{0..3}/<seq>/<frame>.png``
(annotator 1 first-frame / full-video, annotator 2 first-frame / full-video expressions). ReferFormer's
``eval_davis.py`` is run on each folder (``davis.evaluate_davis`` with task "unsupervised": Hungarian matching
of proposals to GT objects, 255 as void). No official script averages the runs; papers report the arithmetic
mean over the four runs of each global column, which ``mean`` holds here.
"""
import logging
from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np

from rvos.evaluation.davis import GLOBAL_COLUMNS, evaluate_davis, write_davis_csvs
from rvos.evaluation.report import TABLE_COLUMNS, format_table
from rvos.evaluation.metrics import DEFAULT_BOUND_TH

logger = logging.getLogger(__name__)

ANNOTATOR_SLOTS = ("anno_0", "anno_1", "anno_2", "anno_3")


def evaluate_refdavis(davis_root: Path, results_root: Path, subset: str = "val",
                      annotators: Sequence[str] = ANNOTATOR_SLOTS, write_csvs: bool = False,
                      sequences: Optional[Sequence[str]] = None, bound_th: float = DEFAULT_BOUND_TH) -> Dict:
    """Evaluate ``<results_root>/<slot>`` for every annotator slot.

    Returns ``{"runs": {slot: davis results}, "mean": {column: mean over the runs}}``. With ``write_csvs`` the
    official ``global_results-<subset>.csv`` and ``per-sequence_results-<subset>.csv`` go into each slot folder.
    """
    results_root = Path(results_root)
    missing = [slot for slot in annotators if not (results_root / slot).is_dir()]
    if missing:
        raise FileNotFoundError(f"annotator result folders missing in {results_root}: {', '.join(missing)}")
    runs = {}
    for slot in annotators:
        runs[slot] = evaluate_davis(davis_root, results_root / slot, task="unsupervised", subset=subset,
                                    sequences=sequences, bound_th=bound_th)
        if write_csvs:
            write_davis_csvs(runs[slot], results_root / slot)
    mean = {column: float(np.mean([runs[slot]["global"][column] for slot in annotators]))
            for column in GLOBAL_COLUMNS}
    rows = {**{slot: runs[slot]["global"] for slot in annotators}, "mean": mean}
    logger.info("%s", format_table(f"Ref-DAVIS17 {subset}: {results_root}", rows, TABLE_COLUMNS["refdavis"]))
    return {"subset": subset, "runs": runs, "mean": mean}
