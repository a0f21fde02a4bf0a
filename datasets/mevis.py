"""MeViS training clips (DATASETS.md §3.3): multi-object expressions trained on union masks.

Layout: ``<mevis_path>/train/JPEGImages/<video>/<frame>.jpg``, ``train/meta_expressions.json`` (each
expression has ``anno_id``: a list of global annotation ids) and ``train/mask_dict.json`` (per
annotation id, one COCO RLE or null per sorted frame), loaded whole into memory. Each RLE is checked
when it is decoded (``util.rle``: its runs must cover the frame; a truncated one is an error naming the
file, the anno_id and the frame); ``tools/check_dataset.py`` checks them all up front.
"""
import logging
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
from PIL import Image

from rvos.datasets.base import (ExpressionClip, ExpressionClipDataset, check_same_size, expression_index, read_json,
                                require_train_split)
from rvos.datasets.instances import (InstanceClipDataset, InstanceSample, instance_samples, instance_transforms,
                                     refer_groups)
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
            return check_annotations(videos, self.mask_dict, expressions_file, self.mask_file, video, exp_id,
                                     expression), MEVIS_LABEL

        samples = expression_index(videos, num_frames, expressions_file, describe)
        super().__init__(split_dir, samples, transforms, num_frames, reverse_prob)
        logger.info("%s: %d videos, %d clips", expressions_file, len(videos), len(samples))

    def frame_mask(self, sample: ExpressionClip, position: int, frame: Image.Image) -> np.ndarray:
        union = np.zeros((frame.height, frame.width), dtype=bool)
        for anno_id in sample.referent:
            union |= object_mask(self.mask_dict, self.mask_file, anno_id, position, frame,
                                 self.frame_path(sample.video, sample.frames[position]))
        return union


def object_mask(mask_dict: Dict[str, List[Optional[dict]]], mask_file: Path, anno_id: str, position: int,
                frame: Image.Image, frame_path: Path) -> np.ndarray:
    """One annotation's mask [H, W] bool in the frame at ``position`` (all False where the entry is null)."""
    rle = mask_dict[anno_id][position]
    if rle is None:
        return np.zeros((frame.height, frame.width), dtype=bool)
    where = f"{mask_file} (anno_id {anno_id}, frame {position})"
    mask = decode_rle(rle, where)
    check_same_size(frame, mask, str(frame_path), where)
    return mask


def check_annotations(videos: Dict[str, dict], mask_dict: Dict[str, list], expressions_file: Path, mask_file: Path,
                      video: str, exp_id: str, expression: dict) -> Tuple[str, ...]:
    """The expression's annotation ids (as strings), each checked to have one mask entry per frame."""
    if "anno_id" not in expression:
        raise ValueError(f"{expressions_file}: expression {exp_id!r} of video {video!r} has no 'anno_id'")
    anno_ids = tuple(str(a) for a in expression["anno_id"])
    num_video_frames = len(videos[video]["frames"])
    for anno_id in anno_ids:
        if anno_id not in mask_dict:
            raise ValueError(f"{mask_file}: no masks for anno_id {anno_id} (video {video!r}, expression {exp_id!r})")
        if len(mask_dict[anno_id]) != num_video_frames:
            raise ValueError(f"{mask_file}: anno_id {anno_id} has {len(mask_dict[anno_id])} entries but video "
                             f"{video!r} has {num_video_frames} frames")
    return anno_ids


def build(image_set: str, args):
    """MeViS train split of ``args.mevis_path`` (the only split used for training, as in the original): union
    masks, or per-object clips in DsHmp's form with ``--model dshmp``."""
    root = Path(args.mevis_path)
    require_train_split(root, image_set, "MeViS")
    if getattr(args, "model", None) == "dshmp":
        return build_instances(root / "train", args)
    transforms = video_transforms_from_args("train", args)
    return MeViSDataset(root / "train", transforms, num_frames=getattr(args, "num_frames", 5),
                        reverse_prob=getattr(args, "clip_reverse_prob", 0.0))


def build_instances(split_dir: Path, args) -> InstanceClipDataset:
    """MeViS training clips in DsHmp's form (its ``MeViSDatasetMapper``): one mask per referred object."""
    expressions_file = split_dir / "meta_expressions.json"
    mask_file = split_dir / "mask_dict.json"
    videos = read_json(expressions_file).get("videos")
    if videos is None:
        raise ValueError(f"{expressions_file}: no top-level 'videos' key")
    logger.info("loading %s", mask_file)
    mask_dict: Dict[str, List[Optional[dict]]] = read_json(mask_file)

    def describe(video: str, exp_id: str, expression: dict) -> Tuple[Tuple[str, ...], Tuple[int, ...]]:
        anno_ids = check_annotations(videos, mask_dict, expressions_file, mask_file, video, exp_id, expression)
        obj_ids = tuple(int(i) for i in expression.get("obj_id", range(len(anno_ids))))
        if len(obj_ids) != len(anno_ids):
            raise ValueError(f"{expressions_file}: expression {exp_id!r} of video {video!r} has {len(obj_ids)} "
                             f"obj_id for {len(anno_ids)} anno_id")
        return anno_ids, obj_ids

    def mask(sample: InstanceSample, k: int, position: int, frame: Image.Image, frame_path: Path) -> np.ndarray:
        return object_mask(mask_dict, mask_file, sample.objects[k], position, frame, frame_path)

    return InstanceClipDataset(split_dir, instance_samples(videos, expressions_file, describe), refer_groups(
        videos, getattr(args, "dshmp_exact_refer_groups", False)), mask, instance_transforms(args),
        num_frames=getattr(args, "num_frames", 8), frame_range=getattr(args, "dshmp_frame_range", 10))
