"""What a dataset check finds: problems (each naming its file) and counts per split."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with a dataset: the file (or folder) it concerns and what is wrong."""

    path: Path
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass
class Report:
    """Problems and counts collected while checking one dataset root (safe to fill from threads)."""

    root: Path
    problems: list = field(default_factory=list)
    counts: dict = field(default_factory=dict)
    _lock: Any = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, path: Path, message: str) -> None:
        with self._lock:
            self.problems.append(Problem(Path(path), message))

    def count(self, split: str, key: str, amount: int = 1) -> None:
        """Add ``amount`` to the ``key`` count of ``split``."""
        with self._lock:
            per_split = self.counts.setdefault(split, {})
            per_split[key] = per_split.get(key, 0) + amount

    def sorted_problems(self) -> list:
        return sorted(self.problems, key=lambda p: (str(p.path), p.message))

    @property
    def clean(self) -> bool:
        return not self.problems
