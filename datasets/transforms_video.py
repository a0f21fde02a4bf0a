"""Clip transforms of the ReferFormer family (DATASETS.md §7) and the video train / val pipelines.

Every transform maps ``(frames, target) -> (frames, target)``:

- ``frames``: a list of T PIL RGB images of one size; ``ToNormalizedTensor`` turns it into a float
  tensor [T, 3, H, W].
- ``target``: a dict. The geometric transforms update the keys present among ``boxes`` [N, 4] (xyxy in
  pixels until ``ToNormalizedTensor`` makes them cx, cy, w, h divided by W, H), ``masks`` [N, H, W] bool,
  ``valid`` [N] int64, ``caption`` (str) and ``size`` [2] (h, w). N is T for most datasets and 1 for the
  single annotated frame of A2D / JHMDB; other keys pass through untouched.

Randomness comes only from Python's ``random`` so that a seed makes a run reproducible.
"""
import random
import re
from typing import Callable, List, Sequence, Tuple

import cv2
import numpy as np
import torch
import torch.nn.functional as nnf
import torchvision.transforms.v2.functional as F
from PIL import Image

from rvos.util.box_ops import box_xyxy_to_cxcywh

Frames = List[Image.Image]
Target = dict

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TRAIN_SCALES = (288, 320, 352, 392, 416, 448, 480, 512)
CROP_PRE_SCALES = (400, 500, 600)
CROP_MIN, CROP_MAX = 384, 600
VAL_SHORT_SIDE, VAL_MAX_SIZE = 360, 640
# Mask2Former / VITA clip augmentation (DsHmp's yaml): the crop branch pre-resizes with the long side <= 1333.
MASK2FORMER_TRAIN_SCALES = (288, 320, 352, 384, 416, 448, 480, 512)
MASK2FORMER_CROP_MAX_SIZE = 1333


class Compose:
    """Apply transforms in order."""

    def __init__(self, transforms: Sequence[Callable]):
        self.transforms = list(transforms)

    def __call__(self, frames, target: Target):
        for transform in self.transforms:
            frames, target = transform(frames, target)
        return frames, target

    def __repr__(self) -> str:
        inner = "".join(f"\n    {t!r}" for t in self.transforms)
        return f"{type(self).__name__}({inner}\n)"


class RandomSelect:
    """Apply ``first`` with probability ``p``, otherwise ``second``."""

    def __init__(self, first: Callable, second: Callable, p: float = 0.5):
        self.first, self.second, self.p = first, second, p

    def __call__(self, frames: Frames, target: Target):
        if random.random() < self.p:
            return self.first(frames, target)
        return self.second(frames, target)


# ----------------------------------------------------------------------------------------- flip

_LEFT_RIGHT = re.compile(r"\b(left|right)(?=(?:most|ward|wards|hand|side)?\b)", re.IGNORECASE)


def swap_left_right(caption: str, legacy: bool = False) -> str:
    """Swap "left" and "right" in a caption, for a horizontally flipped clip.

    By default only whole words (and the compounds leftmost/leftward(s)/lefthand/leftside and their
    "right" forms) are swapped, keeping the first letter's case, so "bright" stays "bright".
    ``legacy=True`` reproduces the original plain substring replacement (left -> @, right -> left,
    @ -> right), which also turns "bright" into "bleft" and any "@" into "right".
    """
    if legacy:
        return caption.replace("left", "@").replace("right", "left").replace("@", "right")

    def swap(match: "re.Match") -> str:
        word = match.group(0)
        other = "right" if word.lower() == "left" else "left"
        return other.capitalize() if word[0].isupper() else other

    return _LEFT_RIGHT.sub(swap, caption)


def hflip(frames: Frames, target: Target) -> Tuple[Frames, Target]:
    """Mirror frames, masks and boxes (x1, x2 -> W - x2, W - x1); all-zero (invalid) boxes stay zero."""
    width = frames[0].width
    target = dict(target)
    if "boxes" in target:
        boxes = target["boxes"]
        flipped = boxes[:, [2, 1, 0, 3]] * torch.tensor([-1.0, 1.0, -1.0, 1.0]) + torch.tensor([width, 0.0, width, 0.0])
        empty = (boxes == 0).all(dim=1, keepdim=True)
        target["boxes"] = torch.where(empty, boxes, flipped)
    if "masks" in target:
        target["masks"] = target["masks"].flip(-1)
    return [F.hflip(frame) for frame in frames], target


class RandomHorizontalFlip:
    """Flip the whole clip with probability ``p`` and swap left/right in ``target['caption']`` (unless
    ``swap_caption`` is False: detectron2's clip flip leaves the sentence as it is)."""

    def __init__(self, p: float = 0.5, legacy_caption_flip: bool = False, swap_caption: bool = True):
        self.p = p
        self.legacy_caption_flip = legacy_caption_flip
        self.swap_caption = swap_caption

    def __call__(self, frames: Frames, target: Target):
        if random.random() < self.p:
            frames, target = hflip(frames, target)
            if "caption" in target and self.swap_caption:
                target["caption"] = swap_left_right(target["caption"], self.legacy_caption_flip)
        return frames, target


# ---------------------------------------------------------------------------------- photometric

_CHANNEL_PERMUTATIONS = ((0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0))


def _coin() -> bool:
    return random.random() < 0.5


class PhotometricDistort:
    """SSD-style colour distortion, drawn independently for every frame.

    Per frame (float32 RGB values in 0..255): add U(-delta, delta) with p 0.5 (then clip to 0..255 if
    ``clip_brightness``); then either contrast -> HSV -> saturation -> hue -> RGB or HSV -> saturation
    -> hue -> RGB -> contrast (p 0.5 each), where contrast multiplies all values by U(contrast_range),
    saturation multiplies S by U(saturation_range) and hue adds U(-hue_delta, hue_delta) degrees
    (each with p 0.5; ``hue_delta=0`` disables hue); finally a random channel permutation with
    probability ``channel_swap_prob``. Values are cast to uint8 the way the original numpy cast does on
    x86, i.e. truncated and wrapped modulo 256 (not clipped).

    The original labels RGB data as BGR for OpenCV; converting RGB<->HSV directly instead mirrors the
    hue axis, and since the hue shift is symmetric the distribution of outputs is the same.
    """

    def __init__(self, brightness_delta: float = 32.0, contrast_range=(0.5, 1.5), saturation_range=(0.5, 1.5),
                 hue_delta: float = 18.0, channel_swap_prob: float = 0.5, clip_brightness: bool = False):
        self.brightness_delta = brightness_delta
        self.contrast_range = tuple(contrast_range)
        self.saturation_range = tuple(saturation_range)
        self.hue_delta = hue_delta
        self.channel_swap_prob = channel_swap_prob
        self.clip_brightness = clip_brightness

    @classmethod
    def referformer(cls) -> "PhotometricDistort":
        """ReferFormer / MUTR / MeViS baselines: contrast and saturation 0.5-1.5, hue 18, swap p 0.5."""
        return cls()

    @classmethod
    def sgmg(cls) -> "PhotometricDistort":
        """SgMg: contrast and saturation 0.8-1.2, no hue, brightness clipped, channel swap p 0.2."""
        return cls(contrast_range=(0.8, 1.2), saturation_range=(0.8, 1.2), hue_delta=0.0,
                   channel_swap_prob=0.2, clip_brightness=True)

    def __call__(self, frames: Frames, target: Target):
        return [self.distort(frame) for frame in frames], target

    def distort(self, frame: Image.Image) -> Image.Image:
        """One frame's distortion, PIL RGB -> PIL RGB."""
        image = np.asarray(frame, dtype=np.float32).copy()
        if _coin():
            image += random.uniform(-self.brightness_delta, self.brightness_delta)
            if self.clip_brightness:
                image = np.clip(image, 0.0, 255.0)
        contrast_first = _coin()
        if contrast_first:
            image = self._contrast(image)
        image = self._hsv_jitter(image)
        if not contrast_first:
            image = self._contrast(image)
        if random.random() < self.channel_swap_prob:
            image = image[:, :, random.choice(_CHANNEL_PERMUTATIONS)]
        return Image.fromarray(_wrap_to_uint8(image))

    def _contrast(self, image: np.ndarray) -> np.ndarray:
        if _coin():
            image = image * random.uniform(*self.contrast_range)
        return image

    def _hsv_jitter(self, image: np.ndarray) -> np.ndarray:
        hsv = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2HSV)
        if _coin():
            hsv[:, :, 1] *= random.uniform(*self.saturation_range)
        if self.hue_delta > 0 and _coin():
            hue = hsv[:, :, 0] + random.uniform(-self.hue_delta, self.hue_delta)
            hue[hue > 360.0] -= 360.0
            hue[hue < 0.0] += 360.0
            hsv[:, :, 0] = hue
        return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def _wrap_to_uint8(image: np.ndarray) -> np.ndarray:
    """Truncate toward zero and wrap modulo 256, like numpy's float -> uint8 cast on x86."""
    return np.ascontiguousarray(np.mod(np.trunc(image).astype(np.int64), 256).astype(np.uint8))


# ------------------------------------------------------------------------------- resize / crop

def resized_hw(height: int, width: int, short_side: int, max_size=None) -> Tuple[int, int]:
    """Output (h, w) of the family's resize rule.

    The short side becomes ``short_side`` unless the long side would then exceed ``max_size``, in which
    case the short side becomes ``round(max_size * short / long)``. The long side is
    ``int(short_side * long / short)`` (truncated). An image whose short side already has the target
    length keeps its size.
    """
    short, long = min(height, width), max(height, width)
    if max_size is not None and long / short * short_side > max_size:
        short_side = int(round(max_size * short / long))
    if short == short_side:
        return height, width
    if width < height:
        return int(short_side * height / width), short_side
    return short_side, int(short_side * width / height)


def resize(frames: Frames, target: Target, short_side: int, max_size=None) -> Tuple[Frames, Target]:
    """Resize every frame with the rule of ``resized_hw``; masks by nearest neighbour (> 0.5 -> bool)."""
    old_w, old_h = frames[0].size
    new_h, new_w = resized_hw(old_h, old_w, short_side, max_size)
    frames = [F.resize(frame, [new_h, new_w]) for frame in frames]
    target = dict(target)
    if "boxes" in target:
        scale = torch.tensor([new_w / old_w, new_h / old_h, new_w / old_w, new_h / old_h])
        target["boxes"] = target["boxes"] * scale
    if "masks" in target:
        masks = target["masks"]
        if masks.shape[0] > 0:
            target["masks"] = nnf.interpolate(masks[:, None].float(), size=(new_h, new_w), mode="nearest")[:, 0] > 0.5
        else:
            target["masks"] = torch.zeros((0, new_h, new_w), dtype=torch.bool)
    target["size"] = torch.tensor([new_h, new_w])
    return frames, target


class RandomResize:
    """Resize to a short side drawn uniformly from ``sizes``, long side capped at ``max_size``."""

    def __init__(self, sizes: Sequence[int], max_size=None):
        self.sizes = list(sizes)
        self.max_size = max_size

    def __call__(self, frames: Frames, target: Target):
        return resize(frames, target, random.choice(self.sizes), self.max_size)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(sizes={self.sizes}, max_size={self.max_size})"


def crop(frames: Frames, target: Target, top: int, left: int, height: int, width: int) -> Tuple[Frames, Target]:
    """Crop one region from every frame; boxes are shifted and clipped to the region."""
    frames = [F.crop(frame, top, left, height, width) for frame in frames]
    target = dict(target)
    if "boxes" in target:
        boxes = target["boxes"] - torch.tensor([left, top, left, top], dtype=torch.float32)
        boxes = torch.min(boxes.reshape(-1, 2, 2), torch.tensor([width, height], dtype=torch.float32))
        target["boxes"] = boxes.clamp(min=0).reshape(-1, 4)
    if "masks" in target:
        target["masks"] = target["masks"][:, top:top + height, left:left + width]
    target["size"] = torch.tensor([height, width])
    return frames, target


class RandomSizeCrop:
    """Crop one random region, w ~ U[min, min(W, max)], h ~ U[min, min(H, max)], shared by all frames."""

    def __init__(self, min_size: int, max_size: int):
        self.min_size, self.max_size = min_size, max_size

    def __call__(self, frames: Frames, target: Target):
        img_w, img_h = frames[0].size
        if min(img_w, img_h) < self.min_size:
            raise ValueError(f"RandomSizeCrop needs frames of at least {self.min_size} px, got {img_w}x{img_h}")
        width = random.randint(self.min_size, min(img_w, self.max_size))
        height = random.randint(self.min_size, min(img_h, self.max_size))
        top = random.randint(0, img_h - height)
        left = random.randint(0, img_w - width)
        return crop(frames, target, top, left, height, width)


class Check:
    """Recompute ``valid`` from the xyxy boxes (x2 > x1 and y2 > y1) and zero the invalid boxes.

    This replaces the mask-based flag, so an object one pixel wide becomes invalid.
    """

    def __call__(self, frames: Frames, target: Target):
        target = dict(target)
        boxes = target["boxes"]
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        target["boxes"] = torch.where(keep[:, None], boxes, torch.zeros_like(boxes))
        target["valid"] = keep.to(torch.int64)
        return frames, target


class ToNormalizedTensor:
    """Frames -> float tensor [T, 3, H, W] ImageNet-normalised; boxes -> cx, cy, w, h divided by W, H."""

    def __init__(self, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        self.mean, self.std = list(mean), list(std)

    def __call__(self, frames: Frames, target: Target):
        clip = torch.stack([F.to_dtype(F.to_image(frame), torch.float32, scale=True) for frame in frames])
        clip = F.normalize(clip, self.mean, self.std)
        target = dict(target)
        if "boxes" in target:
            height, width = clip.shape[-2:]
            target["boxes"] = box_xyxy_to_cxcywh(target["boxes"]) / torch.tensor(
                [width, height, width, height], dtype=torch.float32)
        return clip, target


# ------------------------------------------------------------------------------------ pipelines

def video_transforms_from_args(image_set: str, args) -> Compose:
    """``make_video_transforms`` with the options of ``args`` (``--max_size``, ``--photometric_after_resize``,
    ``--legacy_caption_flip``); ``image_set`` other than 'train' gives the val pipeline."""
    return make_video_transforms(
        "train" if image_set == "train" else "val", max_size=getattr(args, "max_size", 640),
        photometric_after_resize=getattr(args, "photometric_after_resize", False),
        legacy_caption_flip=getattr(args, "legacy_caption_flip", False))


def make_mask2former_clip_transforms(scales: Sequence[int] = MASK2FORMER_TRAIN_SCALES, max_size: int = 768,
                                     swap_caption: bool = False) -> Compose:
    """Mask2Former / VITA training clips (DsHmp): with probability 0.5 resize to 400-600 (long side <= 1333) and
    crop 384-600, then resize to ``scales`` (long side <= ``max_size``), flip with probability 0.5 (the sentence
    untouched unless ``swap_caption``), no photometric distortion -> Check -> tensor."""
    resize_or_crop = RandomSelect(
        RandomResize(scales, max_size=max_size),
        Compose([RandomResize(CROP_PRE_SCALES, max_size=MASK2FORMER_CROP_MAX_SIZE), RandomSizeCrop(CROP_MIN, CROP_MAX),
                 RandomResize(scales, max_size=max_size)]))
    return Compose([resize_or_crop, RandomHorizontalFlip(swap_caption=swap_caption), Check(), ToNormalizedTensor()])


def make_video_transforms(image_set: str, max_size: int = 640, photometric_after_resize: bool = False,
                          legacy_caption_flip: bool = False) -> Compose:
    """The family's clip pipelines.

    train: flip -> photometric -> RandomSelect(resize to TRAIN_SCALES | resize 400-600, crop 384-600,
    resize to TRAIN_SCALES) -> Check -> tensor. With ``photometric_after_resize`` (SgMg) the flip and
    the narrower SgMg photometric distortion come after the resize/crop instead.
    val: resize to short side 360 with the long side at most 640 -> tensor.
    """
    if image_set == "val":
        return Compose([RandomResize([VAL_SHORT_SIDE], max_size=VAL_MAX_SIZE), ToNormalizedTensor()])
    if image_set != "train":
        raise ValueError(f"unknown image_set {image_set!r}; expected 'train' or 'val'")
    resize_or_crop = RandomSelect(
        Compose([RandomResize(TRAIN_SCALES, max_size=max_size), Check()]),
        Compose([
            RandomResize(CROP_PRE_SCALES),
            RandomSizeCrop(CROP_MIN, CROP_MAX),
            RandomResize(TRAIN_SCALES, max_size=max_size),
            Check(),
        ]),
    )
    flip = RandomHorizontalFlip(legacy_caption_flip=legacy_caption_flip)
    if photometric_after_resize:
        steps = [resize_or_crop, flip, PhotometricDistort.sgmg()]
    else:
        steps = [flip, PhotometricDistort.referformer(), resize_or_crop]
    return Compose(steps + [ToNormalizedTensor()])
