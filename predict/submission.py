"""Submission zips for the evaluation servers, and their checker.

Ref-YouTube-VOS (CodaLab) wants ``Annotations/<video>/<exp_id>/<frame>.png``; MeViS (CodaLab) wants
the video folders at the archive root, ``<video>/<exp_id>/<frame>.png`` (DATASETS.md §1.4, §3.4).
Every PNG is single-channel (mode L) with values {0, 255}, at the size of its frame, one per frame
of the meta (empty masks included), and nothing else is in the archive.
"""
import io
import logging
import os
import zipfile
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Dict, Iterable, Iterator, List, NamedTuple, Optional, Sequence

import numpy as np
from PIL import Image

from rvos.predict.base import VideoJob
from rvos.predict.writers import png_problem
from rvos.util.write_failure import write_failure

logger = logging.getLogger(__name__)

MAX_LISTED = 20
CHECK_THREADS = 4
CHECK_CHUNK = 2048


class SubmissionEntry(NamedTuple):
    """One file of a submission: its name in the zip, the prediction on disk, and the frame it segments."""

    arcname: str
    prediction: Optional[Path]
    frame: Path
    video: str
    exp_id: str


def binary_mask_entries(jobs: Sequence[VideoJob], expression_dir: Optional[Callable[[VideoJob, str], Path]],
                        root: str) -> Iterator[SubmissionEntry]:
    """The entries of a ``[root/]<video>/<exp_id>/<frame>.png`` submission, videos and expressions in order
    (predictions under ``expression_dir(job, exp_id)``; None without it)."""
    prefix = f"{root}/" if root else ""
    for job in jobs:
        for exp in job.expressions:
            folder = expression_dir(job, exp.exp_id) if expression_dir is not None else None
            for frame, frame_file in zip(job.frame_names, job.frame_files):
                yield SubmissionEntry(f"{prefix}{job.name}/{exp.exp_id}/{frame}.png",
                                      folder / f"{frame}.png" if folder is not None else None, frame_file, job.name,
                                      exp.exp_id)


def write_zip(entries: Iterable[SubmissionEntry], path: Path) -> Path:
    """Write the entries' prediction files into ``path`` (through a partial file and a rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    count = 0
    try:
        with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for entry in entries:
                if not entry.prediction.is_file():
                    raise FileNotFoundError(f"{entry.prediction}: prediction missing, cannot build {path}")
                archive.write(entry.prediction, entry.arcname)
                count += 1
        os.replace(partial, path)
    except FileNotFoundError:
        raise
    except OSError as err:
        raise write_failure(path, err, "submission zip", f"The {count} prediction files packed so far and the rest "
                            "are unchanged on disk: once there is room, rerun the same command (it only writes the "
                            "zip).") from err
    finally:
        if partial.exists():
            partial.unlink()
    logger.info("wrote %s (%d files)", path, count)
    return path


def _png_problem(data: bytes, frame: Path) -> Optional[str]:
    """Why one submitted PNG is wrong (None when it is right)."""
    damaged = png_problem(io.BytesIO(data))
    if damaged is not None:
        return f"unreadable PNG ({damaged})"
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format != "PNG":
                return f"not a PNG ({image.format})"
            if image.mode != "L":
                return f"not single-channel 8-bit (mode {image.mode}; expected L)"
            values = np.unique(np.asarray(image))
            size = image.size
    except (OSError, SyntaxError, ValueError) as err:
        return f"unreadable PNG ({err})"
    if not set(values.tolist()) <= {0, 255}:
        return f"not binary 0/255 (values {values[:6].tolist()}{'...' if len(values) > 6 else ''})"
    try:
        with Image.open(frame) as image:
            expected = image.size
    except OSError as err:
        return f"cannot read its frame {frame} ({err})"
    if size != expected:
        return f"size {size[0]}x{size[1]} but the frame {frame.name} is {expected[0]}x{expected[1]} (WxH)"
    return None


def _missing_summary(missing: List[SubmissionEntry], expected: Sequence[SubmissionEntry]) -> List[str]:
    """Missing files grouped into whole videos, whole expressions and single frames."""
    per_video = defaultdict(int)
    per_expression = defaultdict(int)
    for entry in expected:
        per_video[entry.video] += 1
        per_expression[(entry.video, entry.exp_id)] += 1
    missing_video = defaultdict(list)
    for entry in missing:
        missing_video[entry.video].append(entry)
    lines = []
    for video, entries in missing_video.items():
        if len(entries) == per_video[video]:
            lines.append(f"missing video {video} (all {len(entries)} files)")
            continue
        by_expression = defaultdict(list)
        for entry in entries:
            by_expression[entry.exp_id].append(entry)
        for exp_id, exp_entries in by_expression.items():
            if len(exp_entries) == per_expression[(video, exp_id)]:
                lines.append(f"missing expression {exp_id} of video {video} (all {len(exp_entries)} frames)")
            else:
                lines += [f"missing frame {entry.arcname}" for entry in exp_entries]
    return lines


def check_submission(zip_path: Path, entries: Iterable[SubmissionEntry]) -> List[str]:
    """Every problem of a submission zip against the expected entries (empty list: the zip is right)."""
    zip_path = Path(zip_path)
    expected = list(entries)
    if not zip_path.is_file():
        return [f"{zip_path}: file not found"]
    try:
        archive = zipfile.ZipFile(zip_path)
    except zipfile.BadZipFile as err:
        return [f"{zip_path}: not a zip file ({err})"]
    problems: List[str] = []
    with archive:
        files = [info for info in archive.infolist() if not info.is_dir()]
        names = [info.filename for info in files]
        present = set(names)
        problems += [f"{name}: stored {count} times (the server keeps one of them, unpredictably)"
                     for name, count in sorted(Counter(names).items()) if count > 1]
        by_name: Dict[str, SubmissionEntry] = {entry.arcname: entry for entry in expected}
        problems += _missing_summary([e for e in expected if e.arcname not in present], expected)
        extra = sorted(present - set(by_name))
        problems += [f"unexpected file {name}" for name in extra]
        if extra and expected and not any(name in by_name for name in names):
            hint = expected[0].arcname.split("/")[0]
            problems.append(f"no expected file found: check the archive root (expected names like "
                            f"{expected[0].arcname!r}, first folder {hint!r})")
        to_check = [info for info in files if info.filename in by_name]  # every copy of a name stored twice
        with ThreadPoolExecutor(CHECK_THREADS) as pool:
            for start in range(0, len(to_check), CHECK_CHUNK):
                chunk = [(archive.read(info), by_name[info.filename]) for info in to_check[start:start + CHECK_CHUNK]]
                results = pool.map(lambda item: (item[1], _png_problem(item[0], item[1].frame)), chunk)
                problems += [f"{entry.arcname}: {problem}" for entry, problem in results if problem]
    logger.info("checked %d files of %s: %d problems", len(to_check), zip_path, len(problems))
    return problems


def summarize_problems(problems: Sequence[str], limit: int = MAX_LISTED) -> str:
    lines = list(problems[:limit])
    if len(problems) > limit:
        lines.append(f"... and {len(problems) - limit} more")
    return "\n".join(lines)
