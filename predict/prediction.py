"""What the Python API returns for one video: per-expression binary masks and per-frame scores, with the
writers of the command line (PNGs, overlay video) and COCO RLE."""
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Union

import numpy as np

from rvos.datasets.base import normalize_caption
from rvos.predict.base import VideoJob, Window
from rvos.predict.overlay import job_frames
from rvos.predict.postprocess import ExpressionOutput
from rvos.predict.writers import save_binary_png
from rvos.util.rle import encode_rle
from rvos.util.video_io import write_overlay


class MaskCollector:
    """Receives the engine's ``(window, expression, ExpressionOutput)`` and keeps, per expression, the binary
    masks at the original frame size (bool [T, H, W], thresholded as the PNG writer does) and the per-frame score
    of the chosen query (float32 [T]). Only these are kept: the model's outputs of a window are dropped once
    collected, so memory grows with the masks, not with the model's outputs."""

    def __init__(self, num_expressions: int, num_frames: int, threshold: float):
        self.num_frames = num_frames
        self.threshold = threshold
        self.masks: List[Optional[np.ndarray]] = [None] * num_expressions
        self.scores = [np.full(num_frames, np.nan, dtype=np.float32) for _ in range(num_expressions)]

    def add(self, window: Window, exp: int, output: ExpressionOutput) -> None:
        positions = list(window.positions)
        if self.masks[exp] is None:
            self.masks[exp] = np.zeros((self.num_frames, *output.orig_size), dtype=bool)
        self.masks[exp][positions] = output.binary_masks(self.threshold)
        self.scores[exp][positions] = output.frame_scores().float().cpu().numpy()


class Prediction:
    """The result of ``Predictor(video, expressions)``.

    ``expressions``: the texts as the model read them (lower-cased, whitespace-normalised); ``masks[i]``: bool
    [T, H, W] of expression i at the original frame size; ``scores[i]``: float32 [T], the sigmoid score of the
    query chosen for expression i in each frame; ``frame_names``: the frames' names (``00000, ...`` for a video
    file or frames in memory, the image names for a folder); ``fps``: the video file's frame rate (else 6).
    ``prediction["the dog"]`` or ``prediction[0]`` gives an expression's masks.
    """

    def __init__(self, job: VideoJob, masks: Sequence[np.ndarray], scores: Sequence[np.ndarray],
                 frame_names: Sequence[str], fps: float):
        self.job = job
        self.expressions = [exp.text for exp in job.expressions]
        self.masks = list(masks)
        self.scores = list(scores)
        self.frame_names = list(frame_names)
        self.fps = fps

    def __len__(self) -> int:
        return len(self.expressions)

    def __getitem__(self, key: Union[int, str]) -> np.ndarray:
        if isinstance(key, str):
            matches = [i for i, text in enumerate(self.expressions) if text == normalize_caption(key)]
            if not matches:
                raise KeyError(f"{key!r} is not one of the expressions {self.expressions}")
            key = matches[0]
        return self.masks[key]

    def __repr__(self) -> str:
        size = "x".join(str(n) for n in self.masks[0].shape[1:]) if self.masks else "?"
        return (f"Prediction({len(self.frame_names)} frames of {size}, expressions={self.expressions}, "
                f"foreground fraction={[round(float(m.mean()), 4) for m in self.masks]})")

    def save_pngs(self, folder) -> Path:
        """Write ``<folder>/<exp_id>/<frame>.png`` ({0, 255}, mode L, original size; ``exp_id`` is the expression's
        position), the layout ``inference.py --video`` writes under ``<output_dir>/<video>/``."""
        folder = Path(folder)
        for exp, masks in zip(self.job.expressions, self.masks):
            target = folder / exp.exp_id
            target.mkdir(parents=True, exist_ok=True)
            for name, mask in zip(self.frame_names, masks):
                save_binary_png(target / f"{name}.png", mask)
        return folder

    def _frame_masks(self) -> Iterator[List[np.ndarray]]:
        for t in range(len(self.frame_names)):
            yield [masks[t] for masks in self.masks]

    def overlay(self, path, fps: Optional[float] = None) -> Path:
        """Write ``path`` (``.mp4`` or ``.gif``): the frames with each expression's masks in its colour and a legend
        (as ``inference.py --video``'s overlay); ``fps`` defaults to the video's."""
        return write_overlay(Path(path), job_frames(self.job), self._frame_masks(), self.expressions,
                             fps or self.fps)

    def to_rle(self) -> List[Dict]:
        """JSON-ready COCO RLE: one ``{"expression", "exp_id", "frames": [{"frame", "score", "segmentation":
        {"size": [H, W], "counts": str}}]}`` per expression (every frame, empty masks included)."""
        return [{"expression": exp.text, "exp_id": exp.exp_id,
                 "frames": [{"frame": name, "score": float(score), "segmentation": encode_rle(mask)}
                            for name, mask, score in zip(self.frame_names, masks, scores)]}
                for exp, masks, scores in zip(self.job.expressions, self.masks, self.scores)]
