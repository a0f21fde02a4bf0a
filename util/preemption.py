"""Preemption: SIGTERM and SIGUSR1 (SLURM's pre-timeout signal, ``#SBATCH --signal=USR1@120``) ask a run to stop
at the next safe point instead of dying where it is.

``PreemptionSignal`` is a context manager that installs handlers which only record the request (a second signal
while the checkpoint is written is recorded again and changes nothing); the run polls ``requested`` and, after
saving, exits with ``REQUEUE_EXIT_CODE``, which ``scripts/train_slurm.sh`` turns into ``scontrol requeue``.
"""
import contextlib
import logging
import signal
import threading
from typing import Dict, Tuple

logger = logging.getLogger(__name__)

# Exit status of a run stopped by a preemption signal after saving its state: 124 is the conventional "stopped
# before completion, retry" status (timeout(1)); SLURM scripts requeue on it, any other non-zero status is an error.
REQUEUE_EXIT_CODE = 124
PREEMPTION_SIGNALS: Tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGUSR1)


def ignore_preemption_signals(worker_id: int = 0) -> None:
    """DataLoader ``worker_init_fn``: a worker ignores SIGTERM/SIGUSR1 (SLURM signals every process of a task, and
    SIGUSR1's default action would kill the worker and with it the epoch); the main process stops them itself."""
    for sig in PREEMPTION_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


@contextlib.contextmanager
def preemption_signals_ignored():
    """SIGTERM/SIGUSR1 ignored inside, the previous handlers restored after: for the exit of a process that has
    saved its state (a launcher such as torchrun sends SIGTERM to the ranks still running once one has exited, which
    would turn a rank's requeue status into a kill)."""
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in PREEMPTION_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class PreemptionSignal:
    """Record SIGTERM/SIGUSR1 while active (main thread only; elsewhere it records nothing and logs why)."""

    def __init__(self, signals: Tuple[signal.Signals, ...] = PREEMPTION_SIGNALS):
        self.signals = signals
        self.received: Tuple[str, ...] = ()
        self._previous: Dict[signal.Signals, object] = {}

    @property
    def requested(self) -> bool:
        return bool(self.received)

    def _handle(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        self.received += (name,)
        if len(self.received) == 1:
            logger.warning("received %s: finishing the current step, then saving and exiting with code %d",
                           name, REQUEUE_EXIT_CODE)

    def __enter__(self) -> "PreemptionSignal":
        if threading.current_thread() is not threading.main_thread():
            logger.info("not in the main thread: preemption signals keep their default action")
            return self
        for sig in self.signals:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()
