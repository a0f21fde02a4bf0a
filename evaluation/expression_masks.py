"""The frames, predicted masks and ground-truth masks of one expression, for looking at it (report GIFs).

``FolderExpressionMasks``: ground truth as PNG folders ``<gt>/<video>/<exp_id>/<frame>.png`` (the
Ref-YouTube-VOS layout of the synthetic held-out splits); ``MeViSExpressionMasks``: ground truth as the union of
the referred objects' RLEs in ``mask_dict.json``. Predictions are ``<results>/<video>/<exp_id>/<frame>.png`` in
both, read exactly as the evaluators read them. Frames are ``<frames>/<video>/<frame>.jpg``.
"""
import json
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

from rvos.evaluation.mevis import expression_ground_truth, read_prediction_png
from rvos.util.video_io import read_image_rgb

FRAME_EXTENSION = ".jpg"
FRAMES_DIR = "JPEGImages"


def guess_frames_root(meta_path: Path) -> Optional[Path]:
    """The frame folder of a meta_expressions.json's split, where the benchmark layout puts it: beside the meta
    (MeViS ``<split>/JPEGImages``) or ``<root>/<split>/JPEGImages`` for a meta in ``<root>/meta_expressions/<split>``
    (Ref-YouTube-VOS) or ``<root>/_synthetic_gt/<split>`` (held-out ground truth); None when neither exists."""
    meta_dir = Path(meta_path).parent
    for candidate in (meta_dir / FRAMES_DIR, meta_dir.parent.parent / meta_dir.name / FRAMES_DIR):
        if candidate.is_dir():
            return candidate
    return None


class FolderExpressionMasks:
    """Masks of a meta_expressions.json's expressions with ground truth as PNG folders."""

    def __init__(self, meta_path: Path, gt_root: Path, pred_root: Path, frames_root: Optional[Path] = None):
        self.videos = json.loads(Path(meta_path).read_text())["videos"]
        self.gt_root, self.pred_root = Path(gt_root), Path(pred_root)
        self.frames_root = Path(frames_root) if frames_root is not None else None

    def frame_names(self, video: str) -> List[str]:
        return list(self.videos[video]["frames"])

    def frames(self, video: str) -> Optional[List[np.ndarray]]:
        """The video's RGB frames [H, W, 3] uint8, or None when its frame folder is not there."""
        if self.frames_root is None or not (self.frames_root / video).is_dir():
            return None
        return [np.asarray(read_image_rgb(self.frames_root / video / f"{name}{FRAME_EXTENSION}"))
                for name in self.frame_names(video)]

    def ground_truth(self, video: str, exp_id: str) -> np.ndarray:
        """bool [T, H, W]."""
        folder = self.gt_root / video / exp_id
        return np.stack([read_prediction_png(folder / f"{name}.png") for name in self.frame_names(video)])

    def masks(self, video: str, exp_id: str) -> Tuple[np.ndarray, np.ndarray]:
        """(prediction, ground truth), each bool [T, H, W]. A video without a prediction folder (scored as empty
        by MeViS) gets an empty prediction."""
        gt = self.ground_truth(video, exp_id)
        folder = self.pred_root / video / exp_id
        if not (self.pred_root / video).is_dir():
            return np.zeros_like(gt), gt
        pred = np.stack([read_prediction_png(folder / f"{name}.png", gt.shape[1:]) for name in self.frame_names(video)])
        return pred, gt


class MeViSExpressionMasks(FolderExpressionMasks):
    """Masks of MeViS-layout expressions: ground truth from ``mask_dict.json``."""

    def __init__(self, meta_path: Path, mask_dict_path: Path, pred_root: Path, frames_root: Optional[Path] = None):
        super().__init__(meta_path, Path(mask_dict_path).parent, pred_root, frames_root)
        self.mask_dict = json.loads(Path(mask_dict_path).read_text())

    def ground_truth(self, video: str, exp_id: str) -> np.ndarray:
        entry = self.videos[video]
        rles = [self.mask_dict[str(anno_id)] for anno_id in entry["expressions"][exp_id]["anno_id"]]
        return expression_ground_truth(rles, len(entry["frames"]), self._frame_shape(video, exp_id))

    def _frame_shape(self, video: str, exp_id: str) -> Optional[Tuple[int, int]]:
        """(H, W) from the first prediction PNG or frame, for expressions whose RLEs are all absent."""
        first = self.frame_names(video)[0]
        prediction = self.pred_root / video / exp_id / f"{first}.png"
        if prediction.is_file():
            return read_prediction_png(prediction).shape
        if self.frames_root is not None and (self.frames_root / video).is_dir():
            image = read_image_rgb(self.frames_root / video / f"{first}{FRAME_EXTENSION}")
            return image.height, image.width
        return None
