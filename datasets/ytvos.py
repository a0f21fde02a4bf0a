"""Ref-YouTube-VOS training clips (DATASETS.md §1.3); Ref-DAVIS17 training reuses them (§2.3).

Layout under the dataset root: ``train/JPEGImages/<video>/<frame>.jpg``, ``train/Annotations/<video>/
<frame>.png`` (palette PNG of object ids), ``train/meta.json`` (object categories) and
``meta_expressions/train/meta_expressions.json`` (expressions with ``obj_id`` as a string).
"""
import logging
from pathlib import Path
from typing import Mapping

import numpy as np
from PIL import Image

from rvos.datasets.base import ExpressionClip, ExpressionClipDataset, check_same_size, expression_index, read_json, \
    read_label_map, require_train_split
from rvos.datasets.categories import category_label, ytvos_category_dict
from rvos.datasets.transforms_video import video_transforms_from_args

logger = logging.getLogger(__name__)


class YTVOSDataset(ExpressionClipDataset):
    """Clips of one object per expression; mask = (annotation PNG == obj_id), label = its category.

    split_dir: e.g. ``<root>/train``; expressions_file: its ``meta_expressions.json``; categories: the
    category -> label vocabulary (YTVOS or DAVIS). Sample: clip [T, 3, H, W] and a target with
    ``frames_idx`` [T], ``labels`` [T], ``boxes`` [T, 4], ``masks`` [T, H, W], ``valid`` [T], ``caption``,
    ``orig_size``, ``size``, ``video``, ``exp_id``.
    """

    def __init__(self, split_dir: Path, expressions_file: Path, transforms, num_frames: int,
                 categories: Mapping[str, int] = ytvos_category_dict, reverse_prob: float = 0.0):
        split_dir, expressions_file = Path(split_dir), Path(expressions_file)
        objects_file = split_dir / "meta.json"
        objects = read_json(objects_file).get("videos", {})
        videos = read_json(expressions_file).get("videos")
        if videos is None:
            raise ValueError(f"{expressions_file}: no top-level 'videos' key")

        def describe(video: str, exp_id: str, expression: dict):
            if "obj_id" not in expression:
                raise ValueError(f"{expressions_file}: expression {exp_id!r} of video {video!r} has no 'obj_id'")
            obj_id = str(expression["obj_id"])
            try:
                category = objects[video]["objects"][obj_id]["category"]
            except KeyError:
                raise ValueError(f"{objects_file}: no category for object {obj_id} of video {video!r}") from None
            return int(obj_id), category_label(categories, category, f"{objects_file} (video {video!r})")

        samples = expression_index(videos, num_frames, expressions_file, describe)
        super().__init__(split_dir, samples, transforms, num_frames, reverse_prob)
        logger.info("%s: %d videos, %d clips", expressions_file, len(videos), len(samples))

    def frame_mask(self, sample: ExpressionClip, position: int, frame: Image.Image) -> np.ndarray:
        path = self.split_dir / "Annotations" / sample.video / f"{sample.frames[position]}.png"
        label_map = read_label_map(path)
        check_same_size(frame, label_map, str(self.frame_path(sample.video, sample.frames[position])), str(path))
        return label_map == sample.referent


def build(image_set: str, args) -> YTVOSDataset:
    """Ref-YouTube-VOS train split from ``args.ytvos_path`` (the valid/test splits have no ground truth)."""
    root = Path(args.ytvos_path)
    return build_expression_split(root, image_set, args, ytvos_category_dict, "Ref-YouTube-VOS")


def build_expression_split(root: Path, image_set: str, args, categories: Mapping[str, int],
                           name: str) -> YTVOSDataset:
    """The train split of a YTVOS-layout dataset at ``root`` (Ref-YouTube-VOS, converted Ref-DAVIS17)."""
    require_train_split(root, image_set, name)
    transforms = video_transforms_from_args("train", args)
    return YTVOSDataset(root / "train", root / "meta_expressions" / "train" / "meta_expressions.json", transforms,
                        num_frames=getattr(args, "num_frames", 5), categories=categories,
                        reverse_prob=getattr(args, "clip_reverse_prob", 0.0))
