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
from rvos.datasets.instances import (InstanceClipDataset, InstanceSample, instance_samples, instance_transforms,
                                     refer_groups)
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
            obj_id = str(expression_object(expressions_file, video, exp_id, expression))
            try:
                category = objects[video]["objects"][obj_id]["category"]
            except KeyError:
                raise ValueError(f"{objects_file}: no category for object {obj_id} of video {video!r}") from None
            return int(obj_id), category_label(categories, category, f"{objects_file} (video {video!r})")

        samples = expression_index(videos, num_frames, expressions_file, describe)
        super().__init__(split_dir, samples, transforms, num_frames, reverse_prob)
        logger.info("%s: %d videos, %d clips", expressions_file, len(videos), len(samples))

    def frame_mask(self, sample: ExpressionClip, position: int, frame: Image.Image) -> np.ndarray:
        return object_in_frame(self.split_dir, sample.video, sample.frames[position], sample.referent, frame,
                               self.frame_path(sample.video, sample.frames[position]))


def expression_object(expressions_file: Path, video: str, exp_id: str, expression: dict):
    """The object id an expression refers to, as written in the file (``obj_id``, a string)."""
    if "obj_id" not in expression:
        raise ValueError(f"{expressions_file}: expression {exp_id!r} of video {video!r} has no 'obj_id'")
    return expression["obj_id"]


def object_in_frame(split_dir: Path, video: str, frame_name: str, obj_id: int, frame: Image.Image,
                    frame_path: Path) -> np.ndarray:
    """Object ``obj_id``'s mask [H, W] bool from the frame's palette annotation PNG."""
    path = split_dir / "Annotations" / video / f"{frame_name}.png"
    label_map = read_label_map(path)
    check_same_size(frame, label_map, str(frame_path), str(path))
    return label_map == obj_id


def build_instances(split_dir: Path, expressions_file: Path, args) -> InstanceClipDataset:
    """Ref-YouTube-VOS training clips in DsHmp's form (one object per expression; not part of DsHmp's release)."""
    videos = read_json(expressions_file).get("videos")
    if videos is None:
        raise ValueError(f"{expressions_file}: no top-level 'videos' key")

    def describe(video: str, exp_id: str, expression: dict):
        obj_id = int(expression_object(expressions_file, video, exp_id, expression))
        return (obj_id,), (obj_id,)

    def mask(sample: InstanceSample, k: int, position: int, frame: Image.Image, frame_path: Path) -> np.ndarray:
        return object_in_frame(split_dir, sample.video, sample.frames[position], sample.objects[k], frame, frame_path)

    return InstanceClipDataset(split_dir, instance_samples(videos, expressions_file, describe), refer_groups(
        videos, getattr(args, "dshmp_exact_refer_groups", False)), mask, instance_transforms(args),
        num_frames=getattr(args, "num_frames", 8), frame_range=getattr(args, "dshmp_frame_range", 10))


def build(image_set: str, args):
    """Ref-YouTube-VOS train split from ``args.ytvos_path`` (the valid/test splits have no ground truth)."""
    root = Path(args.ytvos_path)
    return build_expression_split(root, image_set, args, ytvos_category_dict, "Ref-YouTube-VOS")


def build_expression_split(root: Path, image_set: str, args, categories: Mapping[str, int], name: str):
    """The train split of a YTVOS-layout dataset at ``root`` (Ref-YouTube-VOS, converted Ref-DAVIS17); per-object
    clips in DsHmp's form with ``--model dshmp``."""
    require_train_split(root, image_set, name)
    if getattr(args, "model", None) == "dshmp":
        return build_instances(root / "train", root / "meta_expressions" / "train" / "meta_expressions.json", args)
    transforms = video_transforms_from_args("train", args)
    return YTVOSDataset(root / "train", root / "meta_expressions" / "train" / "meta_expressions.json", transforms,
                        num_frames=getattr(args, "num_frames", 5), categories=categories,
                        reverse_prob=getattr(args, "clip_reverse_prob", 0.0))
