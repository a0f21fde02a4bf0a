"""Check a dataset root against the on-disk spec of its benchmark (``DATASETS.md``).

``check_dataset(name, root, split=None)`` returns every problem found (each names the file it
concerns); an empty list means the root is clean. ``inspect_dataset`` also returns the counts per
split (videos, expressions, frames, ...), which are reported, never compared with real sizes.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Callable, Optional

from . import a2d, davis, jhmdb, mevis, refcoco, ytvos
from .report import Problem, Report

__all__ = ["CHECKERS", "SPLITS", "Problem", "Report", "check_dataset", "inspect_dataset"]

CHECKERS: dict[str, Callable] = {
    "ytvos": ytvos.check,
    "davis": davis.check,
    "mevis": mevis.check,
    "a2d": a2d.check,
    "jhmdb": jhmdb.check,
    "refcoco": functools.partial(refcoco.check_family, "refcoco"),
    "refcoco+": functools.partial(refcoco.check_family, "refcoco+"),
    "refcocog": functools.partial(refcoco.check_family, "refcocog"),
}
SPLITS: dict[str, tuple] = {
    "ytvos": ytvos.SPLITS,
    "davis": davis.SPLITS,
    "mevis": mevis.SPLITS,
    "a2d": a2d.SPLITS,
    "jhmdb": jhmdb.SPLITS,
    **{name: splits for name, splits in refcoco.SPLITS.items()},
}


def inspect_dataset(name: str, root: Path, split: Optional[str] = None, decode: bool = True,
                    workers: int = 1) -> Report:
    """Check dataset ``name`` at ``root`` (all splits, or just ``split``) and return the full report.

    ``decode`` False only checks that files exist (fast); ``workers`` > 1 decodes on threads.
    """
    if name not in CHECKERS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {sorted(CHECKERS)}")
    if split is not None and split not in SPLITS[name]:
        raise ValueError(f"unknown split {split!r} for {name}; expected one of {SPLITS[name]}")
    root = Path(root)
    report = Report(root)
    if not root.is_dir():
        report.add(root, "dataset root does not exist")
        return report
    CHECKERS[name](root, (split,) if split else SPLITS[name], report, decode=decode, workers=workers)
    report.problems = report.sorted_problems()
    return report


def check_dataset(name: str, root: Path, split: Optional[str] = None, decode: bool = True,
                  workers: int = 1) -> list:
    """Every :class:`Problem` of dataset ``name`` at ``root``; empty when the root matches the spec."""
    return inspect_dataset(name, root, split, decode, workers).problems
