"""Per-object training clips for set-prediction models (DsHmp, as its ``MeViSDatasetMapper``).

One sample per expression of the videos with at least 2 frames; a clip is a uniformly drawn reference frame plus
``num_frames - 1`` frames within ``frame_range`` of it (``clip_sampler.sample_near_reference``); the target holds
one mask per referred object; a clip whose objects are absent from every sampled frame (after augmentation) is
redrawn. ``refer_groups`` numbers every expression of the file and groups those referring alike (DsHmp's
contrastive memory bank), computed when the dataset is built (the original prepares JSON files with
``tools/get_refer_id.py``).
"""
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import numpy as np
import torch
from PIL import Image

from rvos.datasets.base import ReferringDataset, make_target, normalize_caption, read_rgb
from rvos.datasets.clip_sampler import sample_near_reference
from rvos.datasets.transforms_video import make_mask2former_clip_transforms

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReferGroups:
    """Every expression of a file, in file order (its index = memory-bank row): ``positives[i]`` the expressions of
    the same video referring to the same objects (i included), ``negatives[i]`` the same video's other expressions."""

    index: Dict[Tuple[str, str], int]
    positives: List[List[int]]
    negatives: List[List[int]]


def object_ids(expression: dict) -> List[Any]:
    """An expression's ``obj_id`` as a list (MeViS: a list; Ref-YouTube-VOS: one id as a string)."""
    ids = expression.get("obj_id", [])
    return list(ids) if isinstance(ids, (list, tuple)) else [ids]


def refer_groups(videos: Dict[str, dict], exact: bool = False) -> ReferGroups:
    """The original ``tools/get_refer_id.py``: expressions numbered over all videos and expressions in file order
    (videos of one frame included); two expressions refer alike when they share the video and the object key.

    DSHMP QUIRK (object key): the original key is the concatenation of the decimal object ids in list order
    (``[1, 12]`` and ``[11, 2]`` collide, ``[1, 2]`` and ``[2, 1]`` differ); ``exact`` compares the sets instead.
    """
    index, groups, by_video = {}, {}, {}
    for video, entry in videos.items():
        for exp_id, expression in entry["expressions"].items():
            ids = object_ids(expression)
            key = tuple(sorted({int(i) for i in ids})) if exact else "".join(str(i) for i in ids)
            idx = len(index)
            index[(video, exp_id)] = idx
            groups.setdefault((video, key), []).append(idx)
            by_video.setdefault(video, []).append(idx)
    positives: List[List[int]] = [[] for _ in index]
    negatives: List[List[int]] = [[] for _ in index]
    for (video, _), members in groups.items():
        for idx in members:
            positives[idx] = list(members)
            negatives[idx] = [i for i in by_video[video] if i not in members]
    return ReferGroups(index, positives, negatives)


@dataclass(frozen=True)
class InstanceSample:
    """One expression of a video: ``objects`` identify its referred objects for the mask reader (MeViS annotation
    ids, Ref-YouTube-VOS object ids), ``obj_ids`` their integer object ids."""

    video: str
    exp_id: str
    caption: str
    frames: Tuple[str, ...]
    objects: Tuple[Any, ...]
    obj_ids: Tuple[int, ...]


Describe = Callable[[str, str, dict], Tuple[Tuple[Any, ...], Tuple[int, ...]]]
# (sample, object index, frame position, frame, frame path) -> the object's mask [H, W] bool in that frame.
MaskReader = Callable[[InstanceSample, int, int, Image.Image, Path], np.ndarray]


def instance_samples(videos: Dict[str, dict], source: Path, describe: Describe) -> List[InstanceSample]:
    """One sample per expression of the videos with at least 2 frames (the original loader skips shorter ones);
    ``describe(video, exp_id, expression) -> (objects, obj_ids)``."""
    samples = []
    for video, entry in videos.items():
        if "frames" not in entry or "expressions" not in entry:
            raise ValueError(f"{source}: video {video!r} lacks 'frames' or 'expressions'")
        frames = tuple(sorted(entry["frames"]))
        for exp_id, expression in entry["expressions"].items():
            if "exp" not in expression:
                raise ValueError(f"{source}: expression {exp_id!r} of video {video!r} has no 'exp' text")
            objects, obj_ids = describe(video, exp_id, expression)
            if len(frames) >= 2:
                samples.append(InstanceSample(video, exp_id, expression["exp"], frames, objects, obj_ids))
    return samples


def instance_transforms(args):
    """DsHmp's clip augmentation from the options (``--max_size``, ``--dshmp_flip_swaps_caption``)."""
    return make_mask2former_clip_transforms(max_size=getattr(args, "max_size", 768),
                                            swap_caption=getattr(args, "dshmp_flip_swaps_caption", False))


class InstanceClipDataset(ReferringDataset):
    """Per-object clips (see the module docstring).

    Target: ``instance_masks`` [K, T, H, W] bool and ``instance_ids`` [K] (objects in ascending id order),
    ``refer_id``, ``positives`` / ``negatives`` [*] int64, ``num_expressions`` (every expression of the file),
    ``caption``, ``size``, ``valid`` [K*T], ``frames_idx``, ``video``, ``exp_id``.
    """

    def __init__(self, split_dir: Path, samples: List[InstanceSample], groups: ReferGroups, mask: MaskReader,
                 transforms, num_frames: int, frame_range: int = 10):
        super().__init__(transforms, resample_invalid=True)
        self.split_dir = Path(split_dir)
        self.samples = samples
        self.groups = groups
        self.mask = mask
        self.num_frames = num_frames
        self.frame_range = frame_range
        logger.info("%s: %d expressions, %d training samples (videos of >= 2 frames)", self.split_dir,
                    len(groups.index), len(samples))

    def __len__(self) -> int:
        return len(self.samples)

    def load_clip(self, idx: int):
        sample = self.samples[idx]
        positions = sample_near_reference(len(sample.frames), self.num_frames, self.frame_range)
        paths = [self.split_dir / "JPEGImages" / sample.video / f"{sample.frames[p]}.jpg" for p in positions]
        frames = [read_rgb(path) for path in paths]
        order = sorted(range(len(sample.obj_ids)), key=lambda i: sample.obj_ids[i])
        masks = [torch.from_numpy(self.mask(sample, k, position, frame, path))
                 for k in order for position, frame, path in zip(positions, frames, paths)]
        refer = self.groups.index[(sample.video, sample.exp_id)]
        target = make_target(
            torch.stack(masks) if masks else torch.zeros((0, frames[0].height, frames[0].width), dtype=torch.bool),
            caption=normalize_caption(sample.caption), frames_idx=torch.tensor(positions), video=sample.video,
            exp_id=sample.exp_id, instance_ids=torch.tensor([sample.obj_ids[k] for k in order], dtype=torch.int64),
            refer_id=refer, positives=torch.tensor(self.groups.positives[refer], dtype=torch.int64),
            negatives=torch.tensor(self.groups.negatives[refer], dtype=torch.int64),
            num_expressions=len(self.groups.index))
        return frames, target

    def finalize(self, clip: torch.Tensor, target: dict):
        """Per-(object, frame) mask rows -> ``instance_masks`` [K, T, H, W]."""
        target = dict(target)
        masks = target.pop("masks")
        target.pop("boxes", None)
        target["instance_masks"] = masks.reshape(-1, clip.shape[0], *masks.shape[-2:])
        return clip, target
