"""RefCOCO / RefCOCO+ / RefCOCOg as images (pretraining, T = 1) or pseudo-videos (joint training).

Files (DATASETS.md §6.2): ``<coco_path>/train2014/<file_name>`` and
``<coco_path>/<name>/instances_<name>_<split>.json``, where every sentence is one "image" entry
(``id`` a counter, ``caption``, ``file_name``, ``height``, ``width``, ``original_id``, ``dataset_name``)
with exactly one annotation (polygons, ``bbox`` xywh, COCO ``category_id``). Captions are used as
written (already lower-case); labels are COCO category ids.
"""
import logging
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch
from PIL import Image

from rvos.datasets.base import ReferringDataset, check_same_size, make_target, read_json, read_rgb
from rvos.datasets.image_to_clip import ImageToClipAugmenter
from rvos.datasets.sentences import expression_text
from rvos.datasets.transforms_image import make_image_transforms
from rvos.datasets.transforms_video import video_transforms_from_args
from rvos.util.rle import segmentation_to_mask

logger = logging.getLogger(__name__)

REFCOCO_NAMES = ("refcoco", "refcoco+", "refcocog")
SHORT_SIDE_REFERENCE_LONG = 640


class ReferringExpressions:
    """The entries of one ``instances_<name>_<split>.json``: (image info, its non-crowd annotations).

    Entries are ordered by image id, as torchvision's ``CocoDetection`` orders them.
    """

    def __init__(self, ann_file: Path):
        self.ann_file = Path(ann_file)
        data = read_json(self.ann_file)
        for key in ("images", "annotations"):
            if key not in data:
                raise ValueError(f"{self.ann_file}: no {key!r} list")
        by_image: Dict[int, List[dict]] = defaultdict(list)
        for ann in data["annotations"]:
            if not ann.get("iscrowd", 0):
                by_image[ann["image_id"]].append(ann)
        self.images = sorted(data["images"], key=lambda image: image["id"])
        for image in self.images:
            expression_text(image.get("caption"), self.ann_file, f"image {image.get('id')} (its 'caption')")
        self.annotations = [by_image.get(image["id"], []) for image in self.images]

    def __len__(self) -> int:
        return len(self.images)

    def referred_object(self, idx: int) -> Optional[dict]:
        """The single annotation of entry ``idx``, or None when it has none; several are an error."""
        anns = self.annotations[idx]
        if len(anns) > 1:
            raise ValueError(f"{self.ann_file}: image id {self.images[idx]['id']} has {len(anns)} non-crowd "
                             "annotations; a referring expression must have exactly one")
        return anns[0] if anns else None


@dataclass
class ReferredImage:
    """One sentence's image and referent: mask [H, W] bool and box [4] xyxy (None when unusable)."""

    image: Image.Image
    info: dict
    category: int
    mask: Optional[np.ndarray]
    box: Optional[torch.Tensor]

    def fields(self) -> dict:
        """Target entries that identify the sentence."""
        return {
            "caption": self.info["caption"],
            "image_id": torch.tensor([self.info["id"]]),
            "original_id": self.info.get("original_id"),
            "dataset_name": self.info.get("dataset_name"),
        }


class _RefExpBase(ReferringDataset):
    """Reads one sentence's image, referred mask and box."""

    def __init__(self, img_folder: Path, ann_file: Path, transforms, resample_invalid: bool):
        super().__init__(transforms, resample_invalid)
        self.img_folder = Path(img_folder)
        self.expressions = ReferringExpressions(ann_file)
        logger.info("%s: %d expressions", ann_file, len(self.expressions))

    def __len__(self) -> int:
        return len(self.expressions)

    def read_entry(self, idx: int) -> ReferredImage:
        """The box is the annotation's xywh bbox as xyxy, clamped; None if degenerate (or no annotation)."""
        info = self.expressions.images[idx]
        image_path = self.img_folder / info["file_name"]
        image = read_rgb(image_path)
        ann = self.expressions.referred_object(idx)
        if ann is None:
            return ReferredImage(image, info, 0, None, None)
        source = f"{self.expressions.ann_file} (annotation {ann.get('id')})"
        mask = segmentation_to_mask(ann["segmentation"], image.height, image.width, source)
        check_same_size(image, mask, str(image_path), source)
        x, y, w, h = (float(v) for v in ann["bbox"])
        box = torch.tensor([x, y, x + w, y + h])
        box[0::2].clamp_(min=0, max=image.width)
        box[1::2].clamp_(min=0, max=image.height)
        usable = bool(box[2] > box[0] and box[3] > box[1])
        return ReferredImage(image, info, int(ann["category_id"]), mask, box if usable else None)


class RefExpDataset(_RefExpBase):
    """Image mode: clip [1, 3, H, W]; target ``boxes`` [1, 4] (from the annotation's bbox), ``labels`` [1],
    ``masks`` [1, H, W] (when ``return_masks``), ``valid`` [1], ``caption``, ``image_id`` [1],
    ``orig_size``, ``size``, ``original_id``, ``dataset_name``. An expression whose box is degenerate or
    cropped away is invalid and redrawn in training.
    """

    def __init__(self, img_folder: Path, ann_file: Path, transforms, return_masks: bool = True, train: bool = True):
        super().__init__(img_folder, ann_file, transforms, resample_invalid=train)
        self.return_masks = return_masks

    def load_clip(self, idx: int):
        entry = self.read_entry(idx)
        height, width = entry.image.height, entry.image.width
        usable = entry.box is not None
        target = {
            "boxes": (entry.box if usable else torch.zeros(4))[None],
            "labels": torch.tensor([entry.category]),
            "valid": torch.tensor([int(usable)]),
            "orig_size": torch.tensor([height, width]),
            "size": torch.tensor([height, width]),
            **entry.fields(),
        }
        if self.return_masks:
            mask = entry.mask if usable else np.zeros((height, width), dtype=bool)
            target["masks"] = torch.from_numpy(mask)[None]
        return [entry.image], target


class RefExpSequenceDataset(_RefExpBase):
    """Pseudo-video mode: the image plus ``num_frames - 1`` augmented copies, in random order.

    Target: ``boxes`` [T, 4] from each frame's mask, ``labels`` [T] (COCO category), ``masks`` [T, H, W],
    ``valid`` [T], ``caption``, ``image_id`` [1], ``orig_size``, ``size``, ``original_id``,
    ``dataset_name``; after the transforms, boxes of empty masks are zero and all boxes are clamped to
    >= 1e-6. ``min_short_side`` > 0 (SgMg: 200) skips images whose short side is below it once the long
    side is scaled to 640.
    """

    def __init__(self, img_folder: Path, ann_file: Path, transforms, num_frames: int, min_short_side: int = 0,
                 augmenter: Optional[ImageToClipAugmenter] = None, train: bool = True):
        super().__init__(img_folder, ann_file, transforms, resample_invalid=train)
        self.num_frames = num_frames
        self.min_short_side = min_short_side
        self.augmenter = augmenter or ImageToClipAugmenter()

    def is_usable(self, idx: int) -> bool:
        if self.min_short_side <= 0:
            return True
        info = self.expressions.images[idx]
        short, long = sorted((info["height"], info["width"]))
        return short * SHORT_SIDE_REFERENCE_LONG / long >= self.min_short_side

    def load_clip(self, idx: int):
        entry = self.read_entry(idx)
        mask = entry.mask
        if mask is None or entry.box is None:
            mask = np.zeros((entry.image.height, entry.image.width), dtype=bool)
        pixels = np.asarray(entry.image)
        pairs = [(pixels, mask)] + [self.augmenter(pixels, mask) for _ in range(self.num_frames - 1)]
        random.shuffle(pairs)
        frames = [Image.fromarray(frame) for frame, _ in pairs]
        masks = torch.from_numpy(np.stack([frame_mask for _, frame_mask in pairs]))
        return frames, make_target(masks, labels=torch.full((self.num_frames,), entry.category), **entry.fields())

    def finalize(self, clip: torch.Tensor, target: dict):
        empty = ~target["masks"].flatten(1).any(1)
        target["boxes"] = torch.where(empty[:, None], torch.zeros_like(target["boxes"]), target["boxes"]).clamp(min=1e-6)
        return clip, target


def annotation_file(root: Path, name: str, image_set: str) -> Path:
    return Path(root) / name / f"instances_{name}_{image_set}.json"


def build(name: str, image_set: str, args) -> RefExpDataset:
    """Image-mode RefCOCO-family split (``train``, ``val``, ``testA``, ``testB``, ``test``) of ``args.coco_path``."""
    root = _check_root(name, args)
    return RefExpDataset(root / "train2014", annotation_file(root, name, image_set),
                         make_image_transforms(image_set, getattr(args, "legacy_caption_flip", False)),
                         return_masks=getattr(args, "masks", True), train=image_set == "train")


def build_sequences(name: str, image_set: str, args) -> RefExpSequenceDataset:
    """Pseudo-video RefCOCO-family split with T = ``args.num_frames`` (joint training)."""
    root = _check_root(name, args)
    transforms = video_transforms_from_args(image_set, args)
    return RefExpSequenceDataset(root / "train2014", annotation_file(root, name, image_set), transforms,
                                 num_frames=getattr(args, "num_frames", 5),
                                 min_short_side=getattr(args, "refcoco_min_short_side", 0),
                                 train=image_set == "train")


def _check_root(name: str, args) -> Path:
    if name not in REFCOCO_NAMES:
        raise ValueError(f"unknown referring-expression dataset {name!r}; expected one of {REFCOCO_NAMES}")
    root = Path(args.coco_path)
    if not root.is_dir():
        raise FileNotFoundError(f"COCO root {root} does not exist")
    return root
