"""A2D-Sentences clips around one annotated frame (DATASETS.md §4).

Layout under ``args.a2d_path``: ``Release/<clips dir>/<video>.mp4`` (``clips320H`` by default,
``CLIPS320`` in some releases), ``text_annotations/a2d_annotation_with_instances/<video>/<NNNNN>.h5``
(1-based frame numbers) and the derived ``a2d_sentences_single_frame_{train,test}_annotations.json``
(a list of ``[query, video_id, frame_idx (1-based), instance_id]``), derived from ``Release/videoset.csv``
and ``text_annotations/{a2d_annotation.txt, a2d_missed_videos.txt}`` when it is absent.
"""
import csv
import io
import logging
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import h5py
import numpy as np
import torch
from PIL import Image

from rvos.datasets.base import ReferringDataset, check_same_size, make_target, normalize_caption, read_json, read_text
from rvos.datasets.sentences import expression_text
from rvos.datasets.clip_sampler import centred_window, sample_clip_indices
from rvos.datasets.transforms_video import video_transforms_from_args
from rvos.util.video_io import read_video_frames

logger = logging.getLogger(__name__)

A2D_LABEL = 0
ANNOTATION_FILES = {
    "train": "a2d_sentences_single_frame_train_annotations.json",
    "val": "a2d_sentences_single_frame_test_annotations.json",
}
SUBSET_CODES = {"train": 0, "val": 1}
MASKS_DIR = Path("text_annotations") / "a2d_annotation_with_instances"
VIDEOSET_FILE = Path("Release") / "videoset.csv"
SENTENCES_FILE = Path("text_annotations") / "a2d_annotation.txt"
MISSED_VIDEOS_FILE = Path("text_annotations") / "a2d_missed_videos.txt"


def a2d_image_id(video_id: str, frame_idx: int, instance_id: int) -> str:
    """The COCO image id of an A2D sample, ``v_<video>_f_<frame (1-based)>_i_<instance>``."""
    return f"v_{video_id}_f_{frame_idx}_i_{instance_id}"


def read_video_rgb(path: Path) -> np.ndarray:
    """Decode every frame of a video file -> uint8 [L, H, W, 3] RGB (PyAV, through ``util.video_io``: a missing,
    truncated or undecodable file is a FrameReadError naming it)."""
    return np.stack(read_video_frames(path))


def read_instance_mask(path: Path, instance_id: int) -> np.ndarray:
    """The mask [H, W] bool of ``instance_id`` in one A2D h5 annotation.

    ``reMask`` is stored transposed, (N, W, H), or (W, H) for a single instance; the mask is the one at
    the first position of ``instance_id`` in ``instance`` (extra trailing masks are ignored).
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: annotation not found")
    with h5py.File(path, "r") as f:
        for key in ("instance", "reMask"):
            if key not in f:
                raise ValueError(f"{path}: missing dataset {key!r}")
        instances = np.asarray(f["instance"]).reshape(-1)
        masks = np.asarray(f["reMask"])
    positions = np.flatnonzero(instances == instance_id)
    if positions.size == 0:
        raise ValueError(f"{path}: instance {instance_id} not among {instances.tolist()}")
    if masks.ndim == 2:
        masks = masks[None]
    if masks.ndim != 3 or masks.shape[0] <= positions[0]:
        raise ValueError(f"{path}: reMask of shape {masks.shape} has no mask for instance position {positions[0]}")
    return masks[positions[0]].T > 0


def read_single_frame_annotations(path: Path) -> List[Tuple[str, str, int, int]]:
    """The derived per-sample list ``[(query, video_id, frame_idx, instance_id), ...]``."""
    entries = read_json(path)
    samples = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, (list, tuple)) or len(entry) != 4:
            raise ValueError(f"{path}: entry {i} is not [query, video_id, frame_idx, instance_id]: {entry!r}")
        query, video_id, frame_idx, instance_id = entry
        expression_text(query, path, f"entry {i}")
        samples.append((query, str(video_id), int(frame_idx), int(instance_id)))
    return samples


def derive_single_frame_annotations(root: Path, image_set: str) -> List[Tuple[str, str, int, int]]:
    """Build the single-frame sample list from the raw A2D files (MTTR's logic, DATASETS.md §4.3).

    Videos of the subset (``videoset.csv`` column 9: 0 train, 1 test) not listed in the missed-videos
    file; for every sentence row of ``a2d_annotation.txt`` of such a video (in file order; rows whose
    instance id is not an integer, i.e. ``1 (copy)``, are dropped) and every h5 of the video in sorted
    order whose ``instance`` holds the id: ``(query lower-cased, video_id, frame_idx, instance_id)``.
    """
    root = Path(root)
    missed = set(read_text(root / MISSED_VIDEOS_FILE).split())
    subset = str(SUBSET_CODES[image_set])
    rows = [row for row in csv.reader(io.StringIO(read_text(root / VIDEOSET_FILE), newline="")) if row]
    bad = [i for i, row in enumerate(rows) if len(row) != 9]
    if bad:
        raise ValueError(f"{root / VIDEOSET_FILE}: row {bad[0] + 1} does not have 9 columns")
    videos = {row[0] for row in rows if row[8].strip() == subset and row[0] not in missed}
    instances_by_file: Dict[Path, List[float]] = {}
    samples = []
    with io.StringIO(read_text(root / SENTENCES_FILE), newline="") as f:
        for line, row in enumerate(csv.DictReader(f), start=2):
            video_id, instance, query = row["video_id"], row["instance_id"].strip(), row["query"]
            if video_id not in videos or not instance.lstrip("-").isdigit():
                continue
            expression_text(query, root / SENTENCES_FILE, f"line {line} (video {video_id})")
            instance_id = int(instance)
            for path in sorted((root / MASKS_DIR / video_id).glob("*.h5")):
                if path not in instances_by_file:
                    with h5py.File(path, "r") as h5:
                        instances_by_file[path] = np.asarray(h5["instance"]).reshape(-1).tolist()
                if instance_id in instances_by_file[path]:
                    samples.append((query.lower(), video_id, int(path.stem), instance_id))
    return samples


class A2DSentencesDataset(ReferringDataset):
    """One sample per (sentence, annotated frame containing its referent).

    The clip is sampled around the annotated frame (0-based position ``frame_idx - 1``): sampler S in
    training, the edge-padded centred window in evaluation. Only that frame has a target, so
    ``labels`` [1] (0), ``boxes`` [1, 4], ``masks`` [1, H, W] and ``valid`` [1]; plus ``frames_idx`` [T],
    ``valid_indices`` [1] (position of the annotated frame in the clip), ``caption``, ``orig_size``,
    ``size`` and ``image_id`` (str). Invalid samples are redrawn in training only.
    """

    def __init__(self, root: Path, samples: Sequence[Tuple[str, str, int, int]], transforms, num_frames: int,
                 train: bool, clips_dir: str = "clips320H", reverse_prob: float = 0.0):
        super().__init__(transforms, resample_invalid=train)
        self.root = Path(root)
        self.samples = list(samples)
        self.num_frames = num_frames
        self.train = train
        self.videos_dir = self.root / "Release" / clips_dir
        self.reverse_prob = reverse_prob

    def __len__(self) -> int:
        return len(self.samples)

    def load_clip(self, idx: int):
        query, video_id, frame_idx, instance_id = self.samples[idx]
        video_path = self.videos_dir / f"{video_id}.mp4"
        video = read_video_rgb(video_path)
        frame_id = frame_idx - 1
        if not 0 <= frame_id < len(video):
            raise ValueError(f"{video_path}: annotated frame {frame_idx} (1-based) beyond its {len(video)} frames")
        if self.train:
            positions = sample_clip_indices(frame_id, len(video), self.num_frames, self.reverse_prob)
        else:
            positions = centred_window(frame_id, self.num_frames, 0, len(video) - 1)
        frames = [Image.fromarray(video[p]) for p in positions]
        mask_path = self.root / MASKS_DIR / video_id / f"{frame_idx:05d}.h5"
        mask = read_instance_mask(mask_path, instance_id)
        check_same_size(frames[0], mask, f"{video_path} (frame {frame_idx})", str(mask_path))
        target = make_target(
            torch.from_numpy(mask)[None],
            caption=normalize_caption(query),
            labels=torch.tensor([A2D_LABEL]),
            frames_idx=torch.tensor(positions),
            valid_indices=torch.tensor([positions.index(frame_id)]),
            image_id=a2d_image_id(video_id, frame_idx, instance_id),
        )
        return frames, target


def build(image_set: str, args) -> A2DSentencesDataset:
    """A2D-Sentences train or val (= test subset) samples of ``args.a2d_path``."""
    root = Path(args.a2d_path)
    if not root.is_dir():
        raise FileNotFoundError(f"A2D-Sentences root {root} does not exist")
    if image_set not in ANNOTATION_FILES:
        raise ValueError(f"unknown A2D image_set {image_set!r}; expected one of {sorted(ANNOTATION_FILES)}")
    annotation_file = root / ANNOTATION_FILES[image_set]
    if annotation_file.is_file():
        samples = read_single_frame_annotations(annotation_file)
    else:
        logger.warning("%s not found: deriving the %s samples from the raw A2D files", annotation_file, image_set)
        samples = derive_single_frame_annotations(root, image_set)
    logger.info("A2D-Sentences %s: %d samples", image_set, len(samples))
    transforms = video_transforms_from_args(image_set, args)
    return A2DSentencesDataset(root, samples, transforms, num_frames=getattr(args, "num_frames", 5),
                               train=image_set == "train", clips_dir=getattr(args, "a2d_clips_dir", "clips320H"),
                               reverse_prob=getattr(args, "clip_reverse_prob", 0.0))
