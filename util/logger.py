"""Run logging: the human log (console + ``<output_dir>/train.log``), the per-epoch JSON lines of
``<output_dir>/log.txt`` (the original format, one ``json.dumps`` per line), TensorBoard scalars and running
metric averages.

Only rank 0 writes files and prints INFO; other ranks print warnings and errors only (prefixed with their rank),
so a multi-GPU console stays readable. Console records go through ``tqdm.write`` so they do not break the
progress bar.
"""
import json
import logging
import math
import os
import sys
from collections import defaultdict, deque
from pathlib import Path
from typing import Dict, Iterable, Mapping, Optional

import torch
import torch.distributed as dist
from tqdm import tqdm

from rvos.util.dist import is_dist_avail_and_initialized

HUMAN_LOG_NAME = "train.log"
JSON_LOG_NAME = "log.txt"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class TqdmHandler(logging.StreamHandler):
    """A console handler that writes through ``tqdm.write`` (keeps an active progress bar intact)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=self.stream)
            self.flush()
        except Exception:  # logging must never raise; report the way logging does
            self.handleError(record)


def setup_logging(output_dir: Optional[Path], rank: int = 0, log_name: str = HUMAN_LOG_NAME,
                  level: int = logging.INFO) -> None:
    """Configure the root logger for this process (replaces handlers installed by an earlier call)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    prefix = "" if rank == 0 else f"[rank {rank}] "
    console = TqdmHandler(sys.stderr)
    console.setFormatter(logging.Formatter(prefix + LOG_FORMAT, datefmt="%H:%M:%S"))
    console.setLevel(level if rank == 0 else logging.WARNING)
    root.addHandler(console)
    if output_dir is not None and rank == 0:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(Path(output_dir) / log_name, encoding="utf-8")
        file_handler.setFormatter(logging.Formatter(LOG_FORMAT))
        file_handler.setLevel(level)
        root.addHandler(file_handler)
    root.setLevel(level)
    logging.captureWarnings(True)


def append_json_line(path: Path, record: Mapping) -> None:
    """Append one JSON object as a line (the original ``log.txt`` format); non-finite floats become null."""
    def clean(value):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(clean(dict(record))) + "\n")
        f.flush()


def drop_epoch_rows(path: Path, first_epoch: int) -> int:
    """Remove the lines of the JSON log ``path`` whose ``epoch`` is ``first_epoch`` or later (rows of epochs a
    resumed run trains again: written before its checkpoint marked them finished); returns how many. The file is
    replaced atomically; lines without an ``epoch`` (``--eval`` rows) are kept."""
    if not path.is_file():
        return 0
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)

    def trained_again(line: str) -> bool:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line cut by a kill mid-write
            return True
        return isinstance(record, dict) and isinstance(record.get("epoch"), int) and record["epoch"] >= first_epoch

    kept = [line for line in lines if not trained_again(line)]
    if len(kept) != len(lines):
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        tmp.write_text("".join(kept), encoding="utf-8")
        os.replace(tmp, path)
    return len(lines) - len(kept)


class Meters:
    """Running sums per name (global average over the epoch) plus a short window for display.

    ``update(loss=1.0, lr=...)`` adds one observation per name; ``synchronize()`` sums the totals over ranks
    (every rank must call it), after which ``averages()`` are the global means.
    """

    def __init__(self, window: int = 20):
        self.total: Dict[str, float] = defaultdict(float)
        self.count: Dict[str, int] = defaultdict(int)
        self.recent: Dict[str, deque] = defaultdict(lambda: deque(maxlen=window))

    def update(self, **values) -> None:
        for name, value in values.items():
            value = float(value.item() if isinstance(value, torch.Tensor) else value)
            self.total[name] += value
            self.count[name] += 1
            self.recent[name].append(value)

    def smoothed(self, name: str) -> float:
        window = self.recent.get(name)
        return sum(window) / len(window) if window else float("nan")

    def averages(self) -> Dict[str, float]:
        return {name: self.total[name] / self.count[name] for name in self.total if self.count[name]}

    def state_dict(self) -> Dict[str, Dict]:
        """This rank's running sums (for a mid-epoch checkpoint; the display window is not kept)."""
        return {"total": dict(self.total), "count": dict(self.count)}

    def add_state(self, state: Mapping[str, Mapping]) -> None:
        """Add the running sums of ``state_dict()`` (of this or another rank: ``synchronize`` sums over ranks)."""
        for name, total in state["total"].items():
            self.total[name] += float(total)
            self.count[name] += int(state["count"][name])

    def synchronize(self) -> None:
        if not is_dist_avail_and_initialized() or not self.total:
            return
        names = sorted(self.total)
        gathered = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, {n: (self.total[n], self.count[n]) for n in names})
        self.total, self.count = defaultdict(float), defaultdict(int)
        for part in gathered:
            for name, (total, count) in part.items():
                self.total[name] += total
                self.count[name] += count


class ScalarWriter:
    """TensorBoard scalars under ``<output_dir>/tb/<exp_name>`` on rank 0; a no-op elsewhere or when
    disabled. ``purge_step`` drops events at or after that step left by an interrupted run (on resume)."""

    def __init__(self, log_dir: Optional[Path], enabled: bool = True, purge_step: Optional[int] = None):
        self.writer = None
        if enabled and log_dir is not None:
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(str(log_dir), purge_step=purge_step)

    def scalars(self, values: Mapping[str, float], step: int, prefix: str = "") -> None:
        if self.writer is None:
            return
        for name, value in values.items():
            if isinstance(value, (int, float)) and math.isfinite(float(value)):
                self.writer.add_scalar(f"{prefix}{name}", float(value), step)

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def format_values(values: Mapping[str, float], names: Iterable[str]) -> str:
    """``name: value`` pairs of the given names that are present, compact floats."""
    return "  ".join(f"{n}: {values[n]:.4g}" for n in names if n in values)
