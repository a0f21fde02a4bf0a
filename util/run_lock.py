"""One training run per output folder: ``<output_dir>/train.lock`` holds the pid and host of the run using it, and
where ``/proc`` tells it, the process's start (boot id and start time).

A second run started in the same folder is refused (``RunLockError`` naming the lock, pid and host) instead of
interleaving its logs and checkpoints with the first. A lock left by a run that was killed is stale when its host
is this host and its pid is gone, or the pid now belongs to a process started later (the pid was reused, or the
machine rebooted); it is then taken over (logged). A lock of another host is never taken over: remove
it by hand once that run is known to be gone. Temporary files of checkpoint saves a kill interrupted
(``.<name>.tmp<pid>``, see ``models.checkpoint.atomic_save``) are removed when the lock is taken.
"""
import json
import logging
import os
import socket
from pathlib import Path
from typing import List, Optional

logger = logging.getLogger(__name__)

LOCK_NAME = "train.lock"
TEMPORARY_GLOB = ".*.tmp*"


class RunLockError(RuntimeError):
    """Another run holds the output folder."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _process_start(pid: int) -> Optional[str]:
    """``<boot id>:<start time in clock ticks>`` of process ``pid`` (Linux ``/proc``), None where it cannot be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None
    after_name = stat[stat.rindex(")") + 2:].split()  # fields 3.. of proc(5); the name may hold spaces
    return f"{boot}:{after_name[19]}"


def _owner_running(owner: dict) -> bool:
    """Whether the process a lock names still runs on this host: its pid exists and, when the lock recorded its
    start, that pid's process is the same one."""
    if not _pid_alive(owner["pid"]):
        return False
    recorded = owner.get("started")
    return recorded is None or _process_start(owner["pid"]) in (None, recorded)


def _read_owner(path: Path) -> Optional[dict]:
    try:
        owner = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None  # cut by a kill while it was written: no owner can be named
    return owner if isinstance(owner, dict) and isinstance(owner.get("pid"), int) else None


class RunLock:
    """``with RunLock(output_dir):`` holds ``<output_dir>/train.lock`` for this process (see the module docstring)."""

    def __init__(self, output_dir: Path):
        self.path = Path(output_dir) / LOCK_NAME
        self.held = False

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": _process_start(os.getpid())}
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._take_over_if_stale(me)
                continue
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(me, f)
            self.held = True
            removed = remove_interrupted_saves(self.path.parent)
            if removed:
                logger.warning("removed %d temporary file(s) of interrupted checkpoint saves: %s", len(removed),
                               ", ".join(p.name for p in removed))
            return
        raise RunLockError(f"{self.path}: could not be taken (created again by another process while a stale lock "
                           "was removed)")

    def _take_over_if_stale(self, me: dict) -> None:
        owner = _read_owner(self.path)
        if owner is None:
            raise RunLockError(f"{self.path} exists but names no pid/host (damaged); if no other training run uses "
                               f"{self.path.parent}, delete it")
        if owner.get("host") != me["host"] or _owner_running(owner):
            where = "this host" if owner.get("host") == me["host"] else f"host {owner.get('host')}"
            raise RunLockError(f"{self.path.parent} is used by another training run (pid {owner['pid']} on {where}, "
                               f"lock {self.path}); wait for it to end or choose another --output_dir (if that run "
                               "is gone, delete the lock)")
        reason = "now another process" if _pid_alive(owner["pid"]) else "no longer running"
        logger.warning("%s: taking over the stale lock of pid %d (%s on this host)", self.path, owner["pid"], reason)
        self.path.unlink(missing_ok=True)

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def remove_interrupted_saves(folder: Path) -> List[Path]:
    """Delete the temporary files of saves a kill interrupted in ``folder`` (call it holding the lock)."""
    removed = []
    for path in sorted(Path(folder).glob(TEMPORARY_GLOB)):
        if path.is_file():
            path.unlink()
            removed.append(path)
    return removed
