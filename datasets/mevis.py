"""MeViS training clips (DATASETS.md §3.3): multi-object expressions trained on union masks.

Layout: ``<mevis_path>/train/JPEGImages/<video>/<frame>.jpg``, ``train/meta_expressions.json`` (each
expression has ``anno_id``: a list of global annotation ids) and ``train/mask_dict.json`` (per
annotation id, one COCO RLE or null per sorted frame), loaded whole into memory. Each RLE is checked
when it is decoded (``util.rle``: its runs must cover the frame; a truncated one is an error naming the
file, the anno_id and the frame); ``tools/check_dataset.py`` checks them all up front.
"""
import logging
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
from PIL import Image

from rvos.datasets.base import (ExpressionClip, ExpressionClipDataset, check_same_size, expression_index, read_json,
                           require_train_split)
from rvos.datasets.transforms_video import video_transforms_from_args
from rvos.util.rle import decode_rle

logger = logging.getLogger(__name__)

MEVIS_LABEL = 0


class MeViSDataset(ExpressionClipDataset):
    """Clips whose target is the union of the expression's objects (label 0).

    A frame's mask is the OR of the decoded RLEs of every ``anno_id`` (nulls skipped), so ``boxes`` is
    the box of the union and ``valid`` is 0 where the union is empty. An expression with an empty
    ``anno_id`` list has all-empty targets (and is resampled in training). Target keys as
    ``YTVOSDataset``.
    """

    def __init__(self, split_dir: Path, transforms, num_frames: int, reverse_prob: float = 0.0,
                 expressions_file: Optional[Path] = None, mask_file: Optional[Path] = None):
        split_dir = Path(split_dir)
        expressions_file = Path(expressions_file or split_dir / "meta_expressions.json")
        self.mask_file = Path(mask_file or split_dir / "mask_dict.json")
        videos = read_json(expressions_file).get("videos")
        if videos is None:
            raise ValueError(f"{expressions_file}: no top-level 'videos' key")
        logger.info("loading %s", self.mask_file)
        self.mask_dict: Dict[str, List[Optional[dict]]] = read_json(self.mask_file)

        def describe(video: str, exp_id: str, expression: dict):
            if "anno_id" not in expression:
                raise ValueError(f"{expressions_file}: expression {exp_id!r} of video {video!r} has no 'anno_id'")
            anno_ids = tuple(str(a) for a in expression["anno_id"])
            num_video_frames = len(videos[video]["frames"])
            for anno_id in anno_ids:
                if anno_id not in self.mask_dict:
                    raise ValueError(f"{self.mask_file}: no masks for anno_id {anno_id} "
                                     f"(video {video!r}, expression {exp_id!r})")
                if len(self.mask_dict[anno_id]) != num_video_frames:
                    raise ValueError(f"{self.mask_file}: anno_id {anno_id} has {len(self.mask_dict[anno_id])} "
                                     f"entries but video {video!r} has {num_video_frames} frames")
            return anno_ids, MEVIS_LABEL

        samples = expression_index(videos, num_frames, expressions_file, describe)
        super().__init__(split_dir, samples, transforms, num_frames, reverse_prob)
        logger.info("%s: %d videos, %d clips", expressions_file, len(videos), len(samples))

    def frame_mask(self, sample: ExpressionClip, position: int, frame: Image.Image) -> np.ndarray:
        union = np.zeros((frame.height, frame.width), dtype=bool)
        for anno_id in sample.referent:
            rle = self.mask_dict[anno_id][position]
            if rle is None:
                continue
            where = f"{self.mask_file} (anno_id {anno_id}, frame {position})"
            mask = decode_rle(rle, where)
            check_same_size(frame, mask, str(self.frame_path(sample.video, sample.frames[position])), where)
            union |= mask
        return union


def build(image_set: str, args) -> MeViSDataset:
    """MeViS train split of ``args.mevis_path`` (the only split used for training, as in the original)."""
    root = Path(args.mevis_path)
    require_train_split(root, image_set, "MeViS")
    transforms = video_transforms_from_args("train", args)
    return MeViSDataset(root / "train", transforms, num_frames=getattr(args, "num_frames", 5),
                        reverse_prob=getattr(args, "clip_reverse_prob", 0.0))
