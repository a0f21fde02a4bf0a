"""Shared machinery of the referring-segmentation datasets.

- ``ReferringDataset``: load a raw clip, transform it, and redraw a random sample (bounded) when no
  frame is valid after augmentation.
- ``ExpressionClipDataset``: the Ref-YouTube-VOS-style index (one sample per expression and per
  ``range(0, L, num_frames)`` start) with the clip sampler S; subclasses say how a frame's mask is read.
- Small readers and the target builder every benchmark uses.

A sample is ``(clip, target)``: ``clip`` a float tensor [T, 3, H, W] and ``target`` a dict (see
``make_target``).
"""
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from rvos.datasets.clip_sampler import sample_clip_indices
from rvos.datasets.sentences import expression_text
from rvos.datasets.prompt_frames import PromptFrames, masked_frame, prompt_position
from rvos.models.tfvos import PROMPT_FRAMES_KEY
from rvos.util.box_ops import masks_to_boxes
from rvos.util.video_io import read_image_rgb as read_rgb  # every loader's frame reader: errors name the file

Transform = Callable[[List[Image.Image], dict], Tuple[Any, dict]]
# Where ``load_clip`` leaves the prompt images (PIL) for ``transform`` (TFVOS training).
PROMPT_IMAGES_KEY = "prompt_images"


def read_text(path: Path) -> str:
    """A UTF-8 text file; a missing or non-UTF-8 file is an error naming it (and the offending byte)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text (byte {data[err.start:err.start + 1]!r} at offset {err.start}); "
                         "annotation files must be UTF-8") from err


def read_json(path: Path) -> Any:
    """Parse a UTF-8 JSON file; a missing, non-UTF-8 or malformed file is an error naming it."""
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err


def read_label_map(path: Path) -> np.ndarray:
    """A palette (mode P) or grey (mode L) PNG as its index array [H, W] uint8 (value = object id)."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: annotation not found")
    with Image.open(path) as image:
        if image.mode not in ("P", "L"):
            raise ValueError(f"{path}: expected a palette PNG (mode P) of object ids, got mode {image.mode}")
        return np.array(image)


def normalize_caption(text: str) -> str:
    """Lower-case and collapse whitespace to single spaces (the video loaders' caption clean-up)."""
    return " ".join(text.lower().split())


def make_target(masks: torch.Tensor, caption: str, labels: Optional[torch.Tensor] = None, **extra) -> Dict[str, Any]:
    """The target of one sample before transforms.

    masks: [N, H, W] bool. Gives ``boxes`` [N, 4] xyxy in pixels (inclusive last column/row, zeros for
    an empty mask, clamped to the image), ``valid`` [N] int64 (1 where the mask is non-empty), the masks,
    ``labels`` [N] int64 when given, ``caption``, ``orig_size`` and ``size`` (both [h, w]), plus ``extra``.
    """
    height, width = masks.shape[-2:]
    boxes = masks_to_boxes(masks)
    boxes[:, 0::2].clamp_(min=0, max=width)
    boxes[:, 1::2].clamp_(min=0, max=height)
    target = {
        "boxes": boxes,
        "masks": masks,
        "valid": masks.flatten(1).any(1).to(torch.int64),
        "caption": caption,
        "orig_size": torch.tensor([height, width]),
        "size": torch.tensor([height, width]),
    }
    if labels is not None:
        target["labels"] = labels
    target.update(extra)
    return target


def require_train_split(root: Path, image_set: str, name: str) -> None:
    """Raise unless ``root`` exists and ``image_set`` is 'train' (splits without training ground truth are
    predicted with inference.py)."""
    if not Path(root).is_dir():
        raise FileNotFoundError(f"{name} root {root} does not exist")
    if image_set != "train":
        raise ValueError(f"{name} has ground truth for training only (image_set {image_set!r}); "
                         "evaluate its other splits with inference.py")


def check_same_size(image: Image.Image, mask: np.ndarray, image_source: str, mask_source: str) -> None:
    """Raise when a mask [H, W] does not match its frame's size."""
    if mask.shape != (image.height, image.width):
        raise ValueError(f"{mask_source}: mask is {mask.shape[1]}x{mask.shape[0]} (WxH) but its frame "
                         f"{image_source} is {image.width}x{image.height}")


class ReferringDataset(Dataset):
    """Base class: ``__getitem__`` = ``load_clip`` -> ``transforms`` -> ``finalize``, redrawn when invalid.

    Subclasses implement ``__len__`` and ``load_clip(idx) -> (frames, target)`` (PIL frames, target as
    ``make_target``). With ``resample_invalid`` (training), a sample whose transformed ``valid`` has no 1
    is replaced by a uniformly drawn other index, at most ``max_resample_attempts`` times in all.
    """

    max_resample_attempts = 100

    def __init__(self, transforms: Transform, resample_invalid: bool):
        self.transforms = transforms
        self.resample_invalid = resample_invalid

    def load_clip(self, idx: int) -> Tuple[List[Image.Image], dict]:
        raise NotImplementedError

    def is_usable(self, idx: int) -> bool:
        """Whether a sample may be returned at all (before loading); resampled otherwise."""
        return True

    def transform(self, frames: List[Image.Image], target: dict) -> Tuple[torch.Tensor, dict]:
        """The random transform of one loaded sample (``transforms``)."""
        return self.transforms(frames, target)

    def finalize(self, clip: torch.Tensor, target: dict) -> Tuple[torch.Tensor, dict]:
        """Hook applied to an accepted, transformed sample."""
        return clip, target

    def __getitem__(self, idx: int):
        current = idx
        for _ in range(self.max_resample_attempts):
            if self.is_usable(current):
                frames, target = self.load_clip(current)
                clip, target = self.transform(frames, target)
                if not self.resample_invalid or bool(target["valid"].any()):
                    return self.finalize(clip, target)
            current = random.randrange(len(self))
        raise RuntimeError(
            f"{type(self).__name__}: no usable sample with a valid frame after {self.max_resample_attempts} "
            f"draws starting at index {idx} (last tried {current}); are the annotations empty?")


@dataclass(frozen=True)
class ExpressionClip:
    """One training sample of the per-expression index.

    ``frames`` are the video's sorted frame names; ``frame_id`` the position the clip is sampled around;
    ``referent`` identifies the object(s) for the subclass (an object id or a tuple of annotation ids).
    """

    video: str
    exp_id: str
    caption: str
    frames: Tuple[str, ...]
    frame_id: int
    referent: Any
    label: int


class ExpressionClipDataset(ReferringDataset):
    """Clips of the Ref-YouTube-VOS family: index per expression and start frame, sampler S.

    ``split_dir`` holds ``JPEGImages/<video>/<frame>.jpg``. Subclasses build the index with
    ``expression_index`` and implement ``frame_mask``. With ``prompt_frames`` set (TFVOS training,
    ``datasets.prompt_frames``), every target also has ``prompt_frames`` [T, 3, H, W]: each frame's prompt frame,
    transformed with the clip (or on its own draw).
    """

    def __init__(self, split_dir: Path, samples: Sequence[ExpressionClip], transforms: Transform,
                 num_frames: int, reverse_prob: float = 0.0, resample_invalid: bool = True):
        super().__init__(transforms, resample_invalid)
        self.split_dir = Path(split_dir)
        self.samples = list(samples)
        self.num_frames = num_frames
        self.reverse_prob = reverse_prob
        self.prompt_frames: Optional[PromptFrames] = None

    def __len__(self) -> int:
        return len(self.samples)

    def frame_mask(self, sample: ExpressionClip, position: int, frame: Image.Image) -> np.ndarray:
        """The referent's mask [H, W] bool in the frame at ``position`` of ``sample.frames``."""
        raise NotImplementedError

    def frame_path(self, video: str, frame_name: str) -> Path:
        return self.split_dir / "JPEGImages" / video / f"{frame_name}.jpg"

    def load_clip(self, idx: int):
        sample = self.samples[idx]
        positions = sample_clip_indices(sample.frame_id, len(sample.frames), self.num_frames, self.reverse_prob)
        frames, masks = [], []
        for position in positions:
            frame = read_rgb(self.frame_path(sample.video, sample.frames[position]))
            frames.append(frame)
            masks.append(torch.from_numpy(self.frame_mask(sample, position, frame)))
        target = make_target(
            torch.stack(masks),
            caption=normalize_caption(sample.caption),
            labels=torch.full((len(positions),), sample.label, dtype=torch.int64),
            frames_idx=torch.tensor(positions),
            video=sample.video,
            exp_id=sample.exp_id,
        )
        if self.prompt_frames is not None:
            target[PROMPT_IMAGES_KEY] = [self.prompt_image(sample, position) for position in positions]
        return frames, target

    def prompt_image(self, sample: ExpressionClip, position: int) -> Image.Image:
        """The prompt frame of the frame at ``position``: its neighbour masked by the referent's mask there."""
        neighbour = prompt_position(position, len(sample.frames))
        frame = read_rgb(self.frame_path(sample.video, sample.frames[neighbour]))
        return masked_frame(frame, self.frame_mask(sample, neighbour, frame))

    def transform(self, frames: List[Image.Image], target: dict) -> Tuple[torch.Tensor, dict]:
        """With prompt frames: the clip and its prompts through one draw of ``transforms`` (or two, see
        ``datasets.prompt_frames``); the prompt clip [T, 3, H', W'] goes to ``target['prompt_frames']``."""
        if PROMPT_IMAGES_KEY not in target:
            return self.transforms(frames, target)
        target = dict(target)
        prompts = target.pop(PROMPT_IMAGES_KEY)
        if self.prompt_frames.independent:
            clip, transformed = self.transforms(frames, target)
            # TFVOS QUIRK (the original's dataset): the prompt clip's random transform is drawn on its own.
            prompt_clip, _ = self.transforms(prompts, target)
        else:
            both, transformed = self.transforms(frames + prompts, target)
            clip, prompt_clip = both[:len(frames)], both[len(frames):]
        transformed[PROMPT_FRAMES_KEY] = prompt_clip
        return clip, transformed


def expression_index(videos: Dict[str, dict], num_frames: int, source: Path,
                     describe: Callable[[str, str, dict], Tuple[Any, int]]) -> List[ExpressionClip]:
    """The per-expression index of a ``meta_expressions.json`` ``videos`` dict, in file order.

    For every video, expression and start in ``range(0, L, num_frames)`` one ``ExpressionClip``.
    ``describe(video, exp_id, expression) -> (referent, label)`` reads the dataset-specific fields.
    """
    samples = []
    for video, entry in videos.items():
        if "frames" not in entry or "expressions" not in entry:
            raise ValueError(f"{source}: video {video!r} lacks 'frames' or 'expressions'")
        frames = tuple(sorted(entry["frames"]))
        if not frames:
            raise ValueError(f"{source}: video {video!r} lists no frames")
        for exp_id, expression in entry["expressions"].items():
            text = expression_text(expression.get("exp"), source, f"expression {exp_id!r} of video {video!r}")
            referent, label = describe(video, exp_id, expression)
            for frame_id in range(0, len(frames), num_frames):
                samples.append(ExpressionClip(video, exp_id, text, frames, frame_id, referent, label))
    return samples
