"""A failed write of an output file (a full disk, a quota, a file-size limit), named with the file, the cause and
the room left.

torch.save reports a short write as ``RuntimeError: [enforce fail at inline_container.cc] unexpected pos N vs M``,
naming neither the file nor the cause; zipfile and ``open().write`` raise ``OSError(ENOSPC)`` without the archive
or the free space. ``write_failure`` turns both into one ``OutputWriteError``.
"""
import errno
import shutil
from pathlib import Path

# errno values meaning "no room for these bytes": a full file system, a quota, the file-size limit (RLIMIT_FSIZE).
NO_ROOM_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
# How torch's zip writer (caffe2 inline_container) words a write that did not complete.
TORCH_WRITE_FAILURES = ("unexpected pos", "PytorchStreamWriter failed writing", "file write failed")


class OutputWriteError(OSError):
    """Writing an output file failed; the message names the file, the cause, the free space and what is kept."""


def is_write_failure(error: BaseException) -> bool:
    """Whether ``error`` (an OSError, or torch's RuntimeError of a short write) means the bytes were not written."""
    if isinstance(error, OSError):
        return True
    return isinstance(error, RuntimeError) and any(text in str(error) for text in TORCH_WRITE_FAILURES)


def _free_space(folder: Path) -> str:
    """The free space of the file system holding ``folder`` (or its nearest existing parent), for messages."""
    for candidate in (folder, *folder.parents):
        try:
            return f"{shutil.disk_usage(candidate).free / 2 ** 20:.1f} MiB free there"
        except OSError:
            continue
    return "free space unknown"


def write_failure(path: Path, error: BaseException, what: str, kept: str) -> OutputWriteError:
    """The OutputWriteError for ``error`` raised while writing ``what`` (e.g. "checkpoint") to ``path``; ``kept``
    says what is left intact and how to go on."""
    path = Path(path)
    no_room = (isinstance(error, OSError) and error.errno in NO_ROOM_ERRNOS) or isinstance(error, RuntimeError)
    cause = ("no room for it: the file system is full, or a quota or file-size limit was reached" if no_room
             else "the write failed")
    return OutputWriteError(f"cannot write the {what} {path}: {cause} ({_free_space(path.parent)}; "
                            f"{type(error).__name__}: {error}). {kept}")
