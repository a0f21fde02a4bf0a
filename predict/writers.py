"""Prediction writers: model outputs -> a benchmark's files, written by a thread pool.

Every output is written so that a partial output never looks complete: a unit (an expression's
folder of PNGs, a DAVIS annotator's sequence folder, an A2D sample's results file) is written under
``.<name>.partial`` beside its final path and renamed when all its files are written. A rerun
treats a unit as complete when its final path holds everything, and rewrites the others.

``--save_logits`` stores, per video and expression, ``<output_root>/logits/<video>/<exp_id>.npz``
(see ``LogitsStore``).
"""
import io
import json
import logging
import os
import shutil
import struct
import zipfile
from concurrent.futures import Executor, Future
from pathlib import Path
from typing import BinaryIO, Callable, Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from PIL import Image

from rvos.predict.base import Unit, VideoJob, Window
from rvos.predict.postprocess import ExpressionOutput


logger = logging.getLogger(__name__)

LOGITS_FORMAT_VERSION = 1


def partial_path(path: Path) -> Path:
    """Where a unit is written before it is complete: ``<parent>/.<name>.partial``."""
    path = Path(path)
    return path.with_name(f".{path.name}.partial")


def fresh_partial_dir(final: Path) -> Path:
    """An empty partial folder for ``final`` (leftovers of an interrupted run are removed)."""
    partial = partial_path(final)
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    return partial


def commit_dir(final: Path) -> None:
    """Rename the partial folder of ``final`` over ``final`` (an older ``final`` is replaced)."""
    final = Path(final)
    if final.exists():
        shutil.rmtree(final)
    os.replace(partial_path(final), final)


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through its partial file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = partial_path(path)
    with open(partial, "wb") as handle:
        handle.write(data)
    os.replace(partial, path)


def save_binary_png(path: Path, mask: np.ndarray) -> None:
    """[H, W] bool -> single-channel (mode L) PNG with values {0, 255}."""
    Image.fromarray(np.where(mask, 255, 0).astype(np.uint8), mode="L").save(path, format="PNG")


def save_palette_png(path: Path, labels: np.ndarray, palette: Sequence[int]) -> None:
    """[H, W] uint8 object indices -> palette (mode P) PNG."""
    image = Image.fromarray(labels, mode="P")
    image.putpalette(list(palette))
    image.save(path, format="PNG")


def png_problem(source: Union[Path, BinaryIO]) -> Optional[str]:
    """Why a PNG (a file, or a binary stream such as a zip member's bytes) is not whole (None when it is): PIL's
    ``verify`` reads every chunk and checks its CRC, without decoding the pixels, so a truncated or damaged file is
    found for the cost of reading it (a PNG cut after its image data still decodes)."""
    try:
        with Image.open(source) as image:
            image.verify()
    except (OSError, SyntaxError, ValueError, struct.error) as err:
        return str(err) or type(err).__name__
    return None


def npz_problem(path: Path) -> Optional[str]:
    """Why a ``--save_logits`` file is not whole (None when it is): every member of the zip is read and its CRC
    checked (``ZipFile.testzip``), so a truncated or damaged file is found without building its arrays."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (OSError, zipfile.BadZipFile, EOFError) as err:
        return str(err) or type(err).__name__
    return None if bad is None else f"member {bad} fails its CRC"


def folder_complete(folder: Path, file_names: Sequence[str]) -> bool:
    """Whether ``folder`` exists and holds every one of ``file_names``, each PNG among them whole (a damaged one
    is logged and makes the folder incomplete, so that it is computed again)."""
    try:
        present = set(os.listdir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return False
    if not present.issuperset(file_names):
        return False
    for name in file_names:
        problem = png_problem(Path(folder) / name) if name.endswith(".png") else None
        if problem is not None:
            logger.warning("%s is damaged (%s): %s is computed again", Path(folder) / name, problem, folder)
            return False
    return True


class LogitsStore:
    """Soft masks and scores of one video's expressions, for ensembling (``--save_logits``).

    One ``<root>/<video>/<exp_id>.npz`` per expression (numpy, no pickle) with:

    - ``mask_probs`` float16 [T, h4, w4]: foreground probability of the chosen query at stride 4 of the
      resized model input (h4 = ceil(h / 4) for a resized frame of h x w), padding cropped off;
    - ``frame_scores`` float32 [T]: the chosen query's sigmoid class score in each frame;
    - ``query`` int16 [T]: the chosen query in each frame (windows may choose differently);
    - ``frames`` str [T]: the frame names; ``orig_size`` int [2] (H0, W0); ``input_size`` int [2] (h, w);
      ``format_version`` int.
    """

    def __init__(self, root: Path, job: VideoJob, frame_names: Sequence[str], orig_size, input_size):
        self.folder = Path(root) / job.name
        self.job = job
        self.frame_names = list(frame_names)
        self.orig_size = tuple(orig_size)
        self.input_size = tuple(input_size)
        self.arrays: Dict[int, Dict[str, np.ndarray]] = {}

    @staticmethod
    def path(root: Path, job: VideoJob, exp: int) -> Path:
        return Path(root) / job.name / f"{job.expressions[exp].exp_id}.npz"

    def add(self, window: Window, exp: int, output: ExpressionOutput) -> None:
        soft = output.soft_masks().to(torch.float16).cpu().numpy()
        if exp not in self.arrays:
            count = len(self.frame_names)
            self.arrays[exp] = {"mask_probs": np.zeros((count, *soft.shape[1:]), dtype=np.float16),
                                "frame_scores": np.zeros(count, dtype=np.float32),
                                "query": np.full(count, -1, dtype=np.int16)}
        arrays, positions = self.arrays[exp], list(window.positions)
        arrays["mask_probs"][positions] = soft
        arrays["frame_scores"][positions] = output.frame_scores().float().cpu().numpy()
        arrays["query"][positions] = output.chosen_query()

    def commit(self) -> None:
        for exp, arrays in self.arrays.items():
            buffer = io.BytesIO()
            np.savez_compressed(buffer, **arrays, frames=np.array(self.frame_names), orig_size=np.array(self.orig_size),
                                input_size=np.array(self.input_size), format_version=np.array(LOGITS_FORMAT_VERSION))
            write_atomic(self.path(self.folder.parent, self.job, exp), buffer.getvalue())


def load_logits(path: Path) -> Dict[str, np.ndarray]:
    """Read one ``--save_logits`` file (see ``LogitsStore``) into a dict of arrays (the file is closed on every
    outcome: ``np.load`` given a path leaves it open when the zip is damaged)."""
    with open(path, "rb") as handle, np.load(handle, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


class VideoOutput:
    """The outputs of one video being written: ``add`` is called from the inference thread for every
    (window, expression) output, file work goes to the pool through ``submit``; ``commit`` runs once
    all submitted work is done (in the finalizer thread) and renames the units into place."""

    def __init__(self, writer: "PredictionWriter", job: VideoJob, units: Sequence[Unit], frame_names: Sequence[str]):
        self.writer = writer
        self.job = job
        self.units = list(units)
        self.frame_names = list(frame_names)
        self.futures: List[Future] = []
        self.logits: Optional[LogitsStore] = None
        self.dropped: List[Unit] = []

    def submit(self, fn: Callable, *args) -> None:
        self.futures.append(self.writer.pool.submit(fn, *args))

    def add(self, window: Window, exp: int, output: ExpressionOutput) -> None:
        raise NotImplementedError

    def keep_logits(self, window: Window, exp: int, output: ExpressionOutput) -> None:
        if self.writer.logits_root is None:
            return
        if self.logits is None:
            self.logits = LogitsStore(self.writer.logits_root, self.job, self.frame_names, output.orig_size,
                                      output.input_size)
        self.logits.add(window, exp, output)

    def drop(self, expressions: Sequence[int]) -> None:
        """Leave out the units that need any of ``expressions`` (which failed): they are not committed, their
        partial files are removed, and their expressions' ``--save_logits`` files are not written."""
        failed = set(expressions)
        self.dropped += [unit for unit in self.units if failed & set(unit.expressions)]
        self.units = [unit for unit in self.units if not failed & set(unit.expressions)]
        if self.logits is not None:
            needed = {exp for unit in self.units for exp in unit.expressions}
            self.logits.arrays = {exp: arrays for exp, arrays in self.logits.arrays.items() if exp in needed}

    def commit(self) -> None:
        if self.logits is not None:
            self.logits.commit()
        for unit in self.units:
            commit_dir(unit.path)
        self._remove_partials(self.dropped)

    def discard(self) -> None:
        """Remove the partial outputs of a failed video."""
        self._remove_partials(self.units + self.dropped)

    @staticmethod
    def _remove_partials(units: Sequence[Unit]) -> None:
        for unit in units:
            partial = partial_path(unit.path)
            if partial.is_dir():
                shutil.rmtree(partial, ignore_errors=True)


class PredictionWriter:
    """Base class: which units a video has, whether they are complete, and ``open`` for a video's outputs.

    pool: the thread pool for file work; threshold: the mask threshold; logits_root: where
    ``--save_logits`` files go (None: not saved).
    """

    def __init__(self, pool: Executor, threshold: float, logits_root: Optional[Path] = None):
        self.pool = pool
        self.threshold = threshold
        self.logits_root = None if logits_root is None else Path(logits_root)

    def units(self, job: VideoJob) -> List[Unit]:
        raise NotImplementedError

    def unit_complete(self, job: VideoJob, unit: Unit) -> bool:
        raise NotImplementedError

    def logits_complete(self, job: VideoJob, unit: Unit) -> bool:
        if self.logits_root is None:
            return True
        for exp in unit.expressions:
            path = LogitsStore.path(self.logits_root, job, exp)
            if not path.is_file():
                return False
            problem = npz_problem(path)
            if problem is not None:
                logger.warning("%s is damaged (%s): its expression is computed again", path, problem)
                return False
        return True

    def order(self, job: VideoJob, expressions: Sequence[int]) -> List[int]:
        """The order in which a window's expressions are computed."""
        return list(expressions)

    def open(self, job: VideoJob, units: Sequence[Unit], frame_names: Sequence[str]) -> VideoOutput:
        raise NotImplementedError


class BinaryMaskOutput(VideoOutput):
    """One folder of {0, 255} PNGs per expression, a PNG for every frame (empty masks included)."""

    def __init__(self, writer, job, units, frame_names):
        super().__init__(writer, job, units, frame_names)
        self.partials = {unit.expressions[0]: fresh_partial_dir(unit.path) for unit in units}

    def add(self, window: Window, exp: int, output: ExpressionOutput) -> None:
        masks = output.binary_masks(self.writer.threshold)
        folder = self.partials[exp]
        for mask, position in zip(masks, window.positions):
            self.submit(save_binary_png, folder / f"{self.frame_names[position]}.png", mask)
        self.keep_logits(window, exp, output)


class BinaryMaskWriter(PredictionWriter):
    """Ref-YouTube-VOS / MeViS / custom-video layout: ``expression_dir(job, exp_id)/<frame>.png``."""

    def __init__(self, pool: Executor, threshold: float, expression_dir: Callable[[VideoJob, str], Path],
                 logits_root: Optional[Path] = None):
        super().__init__(pool, threshold, logits_root)
        self.expression_dir = expression_dir

    def units(self, job: VideoJob) -> List[Unit]:
        return [Unit(exp.exp_id, self.expression_dir(job, exp.exp_id), (i,)) for i, exp in enumerate(job.expressions)]

    def unit_complete(self, job: VideoJob, unit: Unit) -> bool:
        names = [f"{name}.png" for name in job.names_for(job.num_frames)]
        return folder_complete(unit.path, names) and self.logits_complete(job, unit)

    def open(self, job: VideoJob, units: Sequence[Unit], frame_names: Sequence[str]) -> VideoOutput:
        return BinaryMaskOutput(self, job, units, frame_names)


def write_json_atomic(path: Path, payload) -> None:
    write_atomic(path, json.dumps(payload).encode("utf-8"))
