"""What decides an output folder's masks, recorded beside them, so that a rerun into the folder only continues the
run that wrote it.

A rerun skips the finished units (``predict.writers``); with another checkpoint or ``--threshold`` it used to keep
the old masks and add new ones beside them without a word, giving a submission mixed from two runs. Rank 0 writes
``<output_root>/prediction_options.json`` before the first output and compares it on every rerun: a difference stops
the run before any work with the options that differ.
"""
import argparse
import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Dict, Optional

from rvos.predict.writers import write_json_atomic

logger = logging.getLogger(__name__)

RECORD_NAME = "prediction_options.json"
HASH_CHUNK = 1 << 22
# The options that change the masks of a given model (shared vs per-expression decoding and --decode_batch do not:
# they give the same masks up to float rounding).
MASK_OPTIONS = ("threshold", "amp", "sub_video_len", "no_sampling", "legacy_mevis2024_subclips",
                "legacy_mevis2024_processes", "davis_clip_len", "key_frames", "key_frame_masks",
                "tfvos_fixed_propagation")


class OutputFolderMismatch(ValueError):
    """The output folder holds predictions of a run with other options."""


def weights_digest(path: Path) -> str:
    """sha256 of a checkpoint file's content (its name does not count), or of a converted checkpoint folder's files
    (relative names and contents, sorted)."""
    path, digest = Path(path), hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode())
        with open(file, "rb") as handle:
            for chunk in iter(lambda: handle.read(HASH_CHUNK), b""):
                digest.update(chunk)
    return digest.hexdigest()


def prediction_record(args: argparse.Namespace, short_side: int, max_size: Optional[int]) -> Dict[str, Any]:
    """The options of this run that decide its masks: the weights (their digest; random weights by their seed),
    the frame resize and ``MASK_OPTIONS``."""
    resume = getattr(args, "resume", "")
    weights = f"sha256:{weights_digest(Path(resume))}" if resume else f"random, seed {args.seed}"
    record: Dict[str, Any] = {"weights": weights, "short_side": short_side, "max_size": max_size}
    record.update({name: getattr(args, name) for name in MASK_OPTIONS if hasattr(args, name)})
    return record


def check_or_write_record(output_root: Path, record: Dict[str, Any]) -> None:
    """Write ``record`` into a folder that has none; raise OutputFolderMismatch naming every option that differs
    from the one it has."""
    path = Path(output_root) / RECORD_NAME
    if not path.is_file():
        write_json_atomic(path, record)
        return
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise OutputFolderMismatch(f"{path} is unreadable ({err}): remove it if the folder's predictions are from "
                                   "this command") from err
    differing = {key: (recorded.get(key), record.get(key)) for key in sorted(set(recorded) | set(record))
                 if recorded.get(key) != record.get(key)}
    if differing:
        lines = "\n".join(f"  {key}: {old!r} in the folder, {new!r} now" for key, (old, new) in differing.items())
        raise OutputFolderMismatch(
            f"{output_root} holds predictions of a run with other options ({path}):\n{lines}\nA rerun would keep "
            "those masks and add new ones beside them. Choose another --output_dir, or remove the folder to compute "
            "everything again.")
