"""Prediction sources, each normalised on load to per-frame foreground probabilities at the original frame size.

One video is read at a time (``Source.load_video``), so no store is ever held whole in memory. Every source
returns ``{exp_id: ExpressionPrediction}`` for the expressions it has; missing videos, expressions and frames are
reported by ``MissingPrediction`` (the caller decides whether that is an error or an abstention).

Formats:

- ``npz``: our ``--save_logits`` stores (``<root>/<video>/<exp_id>.npz``, see ``rvos.predict.writers.LogitsStore``):
  stride-4 probabilities upsampled to the original size as our post-processing does (bilinear on the logits,
  ``align_corners=False``, then the sigmoid);
- ``pth``: the I23 stores ``{video: {exp_id: {'mask_logits': [T, H, W], 'class_info': [T]}}}``, one file or split
  chunks in any video order, read with ``torch.load(weights_only=True)`` (no arbitrary unpickling); ``values`` says
  whether ``mask_logits`` holds logits or probabilities;
- ``png``: ``Annotations/<video>/<exp_id>/<frame>.png`` trees (binary; foreground iff the value read in mode P is
  255, the I23 ``read_mask`` rule); no scores.
"""
import logging
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from rvos.predict.writers import load_logits, png_problem

logger = logging.getLogger(__name__)

VALUE_KINDS = ("logits", "probabilities")
PROBABILITY_EPS = 2.0 ** -12  # half the float16 spacing below 1: a stored 1.0 is any p above 1 - 2**-12


class MissingPrediction(KeyError):
    """A source lacks a video, an expression or a frame that the meta lists."""

    def __str__(self):
        return str(self.args[0])


class SourceError(ValueError):
    """A source file is unreadable or malformed (the message names the file)."""


@dataclass
class ExpressionPrediction:
    """One expression of one video from one source.

    probs: float32 [T, H, W] foreground probabilities at the original frame size, in meta frame order.
    scores: float64 [T] per-frame scores, or None when the source has none (PNG trees).
    kind: how the source stored the values ("logits", "probabilities" or "binary").
    """
    probs: np.ndarray
    scores: Optional[np.ndarray]
    kind: str


def sigmoid(values: np.ndarray) -> np.ndarray:
    """float32 sigmoid computed by torch (bit-identical to the original scripts' ``tensor.sigmoid()``)."""
    return torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32)).sigmoid().numpy()


class Source:
    """Base of the sources: ``load_video(video, meta_video) -> {exp_id: ExpressionPrediction}``."""

    def __init__(self, name: str, path: Path):
        self.name = name
        self.path = Path(path)

    def load_video(self, video: str, meta_video: dict) -> Dict[str, ExpressionPrediction]:
        raise NotImplementedError

    def entry_path(self, video: str, exp_id: str) -> Path:
        """The file (or folder) that holds one expression of one video, for messages."""
        return self.path

    def missing_video(self, video: str) -> "MissingPrediction":
        return MissingPrediction(f"source {self.name} ({self.path}) has no video {video}")

    def video_folder(self, video: str) -> Path:
        """``<path>/<video>`` of a folder-per-video store; a missing folder is a MissingPrediction."""
        folder = self.path / video
        if not folder.is_dir():
            raise self.missing_video(video)
        return folder


class PthSource(Source):
    """I23 ``.pth`` store(s): ``path`` is one file or a folder of chunk files (``*.pth``, any video order).

    The chunk index (which file holds which video) is built once from every chunk, memory-mapped (``mmap=True``); a
    video's file is mapped again for each video and released after it, so only that video's tensors are read and
    memory does not grow with the store (a store in torch's legacy format cannot be mapped: it is held whole).
    ``values`` is "logits" (probabilities = float32 sigmoid) or "probabilities" (used as they are).
    """

    def __init__(self, name: str, path: Path, values: str):
        super().__init__(name, path)
        if values not in VALUE_KINDS:
            raise SourceError(f"source {name}: values must be one of {VALUE_KINDS}, got {values!r}")
        self.values = values
        self.files = sorted(self.path.glob("*.pth")) if self.path.is_dir() else [self.path]
        if not self.files:
            raise SourceError(f"source {name}: no .pth files in {self.path}")
        self._index: Optional[Dict[str, Path]] = None
        self._legacy: Dict[Path, dict] = {}  # stores that cannot be memory-mapped, held whole (one at a time)

    def _read(self, path: Path) -> dict:
        try:
            store = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as err:
            if "mmap" not in str(err):
                raise SourceError(f"source {self.name}: cannot read {path}: {err}") from err
            store = self._legacy.get(path) or self._read_legacy(path)
            self._legacy = {path: store}
        except Exception as err:  # torch raises many types for a bad file; all are reported with the file name
            raise SourceError(f"source {self.name}: cannot read {path}: {err}") from err
        if not isinstance(store, dict):
            raise SourceError(f"source {self.name}: {path} holds a {type(store).__name__}, expected a dict of videos")
        return store

    def _read_legacy(self, path: Path) -> dict:
        """A store in torch's legacy (non-zip) format, which cannot be memory-mapped: read whole."""
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # torch raises many types for a bad file; all are reported with the file name
            raise SourceError(f"source {self.name}: cannot read {path}: {err}") from err

    def index(self) -> Dict[str, Path]:
        """video -> chunk file (a video in two chunks is an error naming both)."""
        if self._index is None:
            index: Dict[str, Path] = {}
            for path in self.files:
                for video in self._read(path):
                    if video in index:
                        raise SourceError(f"source {self.name}: video {video} is in both {index[video]} and {path}")
                    index[video] = path
            self._index = index
        return self._index

    def entry_path(self, video, exp_id):
        return self.index().get(video, self.path)

    def load_video(self, video, meta_video):
        index = self.index()
        if video not in index:
            raise self.missing_video(video)
        path = index[video]
        if path in self._legacy:
            entries = self._legacy[path][video]
        else:  # mapped afresh for each video and unmapped after it: the pages read do not stay in this process
            entries = self._read(path)[video]
        frames = len(meta_video["frames"])
        out = {}
        for exp_id, entry in entries.items():
            try:
                values = torch.as_tensor(entry["mask_logits"]).float()
                scores = np.asarray(entry["class_info"], dtype=np.float64)
            except (KeyError, TypeError) as err:
                raise SourceError(f"source {self.name}: {path} video {video} expression {exp_id}: {err!r} "
                                  "(expected 'mask_logits' and 'class_info')") from err
            if values.ndim != 3 or values.shape[0] != frames or scores.shape != (frames,):
                raise MissingPrediction(f"source {self.name} ({path}) video {video} expression {exp_id}: "
                                        f"{values.shape[0] if values.ndim else 0} frames, the meta lists {frames}")
            probs = values.sigmoid() if self.values == "logits" else values
            out[str(exp_id)] = ExpressionPrediction(probs.numpy(), scores, self.values)
        return out


class NpzSource(Source):
    """Our ``--save_logits`` store: ``<path>/<video>/<exp_id>.npz`` (float16 stride-4 probabilities)."""

    def entry_path(self, video, exp_id):
        return self.path / video / f"{exp_id}.npz"

    def load_video(self, video, meta_video):
        folder = self.video_folder(video)
        out = {}
        for exp_id in meta_video["expressions"]:
            path = folder / f"{exp_id}.npz"
            if not path.is_file():
                continue
            probs, scores, frames, (height, width) = self._read(path)
            missing = [f for f in meta_video["frames"] if f not in frames]
            if missing:
                raise MissingPrediction(f"source {self.name} ({path}) lacks frames {missing[:5]}")
            order = [frames.index(f) for f in meta_video["frames"]]
            out[exp_id] = ExpressionPrediction(upsample_probabilities(probs[order], (height, width)),
                                               scores[order].astype(np.float64), "probabilities")
        return out

    def _read(self, path: Path):
        """(probs [T, h, w], scores [T], frame names, (H, W)) of one file, its arrays consistent with each other."""
        try:
            data = load_logits(path)
            probs, scores = data["mask_probs"], data["frame_scores"]
            frames = [str(f) for f in data["frames"]]
            height, width = (int(v) for v in data["orig_size"])
        except (OSError, KeyError, ValueError, TypeError, EOFError, zipfile.BadZipFile) as err:
            raise SourceError(f"source {self.name}: cannot read {path}: {err!r}") from err
        if probs.ndim != 3 or probs.shape[0] != len(frames) or scores.shape != (len(frames),):
            raise SourceError(f"source {self.name}: {path} is inconsistent: mask_probs {list(probs.shape)} and "
                              f"frame_scores {list(scores.shape)} for {len(frames)} frames")
        return probs, scores, frames, (height, width)


def upsample_probabilities(probs: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """[T, h, w] stride-4 probabilities -> float32 [T, H, W]: back to logits, bilinear (align_corners=False) to
    ``size``, sigmoid: the path of ``ExpressionOutput.probabilities`` (up to the float16 rounding of the store)."""
    p = torch.from_numpy(probs.astype(np.float32)).clamp(PROBABILITY_EPS, 1 - PROBABILITY_EPS)
    logits = torch.log(p) - torch.log1p(-p)
    up = F.interpolate(logits[None], size=tuple(size), mode="bilinear", align_corners=False)[0]
    return up.sigmoid().numpy()


def read_binary_png(path: Path) -> np.ndarray:
    """bool [H, W]: the I23 ``read_mask`` rule, foreground iff the pixel read in mode P is 255."""
    problem = png_problem(path)
    if problem is not None:
        raise SourceError(f"{path} is not a readable PNG: {problem}")
    with Image.open(path) as image:
        return np.array(image.convert("P")) == 255


class PngSource(Source):
    """An ``Annotations/<video>/<exp_id>/<frame>.png`` tree of binary masks; frames read by meta frame name."""

    def entry_path(self, video, exp_id):
        return self.path / video / exp_id

    def load_video(self, video, meta_video):
        folder = self.video_folder(video)
        out = {}
        for exp_id in meta_video["expressions"]:
            exp_dir = folder / exp_id
            if not exp_dir.is_dir():
                continue
            masks: List[np.ndarray] = []
            for frame in meta_video["frames"]:
                path = exp_dir / f"{frame}.png"
                if not path.exists():
                    raise MissingPrediction(f"source {self.name} lacks {path}")
                masks.append(read_binary_png(path))
                if masks[-1].shape != masks[0].shape:
                    raise SourceError(f"source {self.name}: {path} is {masks[-1].shape[1]}x{masks[-1].shape[0]}, "
                                      f"the first frame of {exp_dir} is {masks[0].shape[1]}x{masks[0].shape[0]}")
            out[exp_id] = ExpressionPrediction(np.stack(masks).astype(np.float32), None, "binary")
        return out


SOURCE_TYPES = ("pth", "npz", "png")


def build_source(name: str, spec: dict, root: Path) -> Source:
    """A source from its recipe entry ``{type, path, values?}`` (``path`` relative to ``root``)."""
    kind, path = spec["type"], Path(root) / spec["path"]
    if not path.exists():
        raise SourceError(f"source {name}: {path} does not exist")
    if kind == "pth":
        return PthSource(name, path, spec.get("values", "logits"))
    if kind == "npz":
        return NpzSource(name, path)
    if kind == "png":
        return PngSource(name, path)
    raise SourceError(f"source {name}: unknown type {kind!r} (one of {SOURCE_TYPES})")
