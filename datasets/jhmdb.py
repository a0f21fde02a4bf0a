"""JHMDB-Sentences evaluation clips (DATASETS.md §5).

Layout under ``args.jhmdb_path``: ``Rename_Images/<action>/<video>/<NNNNN>.png`` (1-based),
``puppet_mask/<action>/<video>/puppet_mask.mat`` (``part_mask`` (H, W, T), possibly shorter than the
frames) and ``jhmdb_sentences_samples_metadata.json``: a list of ``[video_id, frame_path, mask_path,
video_total_frames, query]`` whose paths carry a prefix such as ``./jhmdb_sentences/`` that is
resolved against the configured root instead of the working directory.
"""
import logging
from pathlib import Path, PurePosixPath
from typing import List, Sequence, Tuple

import numpy as np
import scipy.io
import torch

from rvos.datasets.base import ReferringDataset, check_same_size, make_target, normalize_caption, read_json, read_rgb
from rvos.datasets.sentences import expression_text
from rvos.datasets.clip_sampler import centred_window
from rvos.datasets.transforms_video import make_video_transforms

logger = logging.getLogger(__name__)

METADATA_FILE = "jhmdb_sentences_samples_metadata.json"
DATA_FOLDERS = ("Rename_Images", "puppet_mask")

Sample = Tuple[str, str, str, int, str]


def jhmdb_image_id(video_id: str, frame: int) -> str:
    """The COCO image id of a JHMDB sample, ``v_<video>_f_<frame (1-based)>``."""
    return f"v_{video_id}_f_{frame}"


def resolve_metadata_path(root: Path, recorded: str) -> Path:
    """Map a metadata path (``./jhmdb_sentences/Rename_Images/...``, ``data/...``) under ``root``.

    Everything before the first ``Rename_Images`` or ``puppet_mask`` component is dropped.
    """
    parts = PurePosixPath(recorded.replace("\\", "/")).parts
    for i, part in enumerate(parts):
        if part in DATA_FOLDERS:
            return Path(root).joinpath(*parts[i:])
    raise ValueError(f"metadata path {recorded!r} contains none of {DATA_FOLDERS}")


def read_part_masks(path: Path) -> np.ndarray:
    """``part_mask`` of a puppet_mask.mat as [T, H, W] bool."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: puppet mask not found")
    content = scipy.io.loadmat(str(path))
    if "part_mask" not in content:
        raise ValueError(f"{path}: no 'part_mask' variable")
    masks = np.asarray(content["part_mask"])
    if masks.ndim != 3:
        raise ValueError(f"{path}: part_mask has shape {masks.shape}, expected (H, W, T)")
    return masks.transpose(2, 0, 1) > 0


def read_samples_metadata(path: Path) -> List[Sample]:
    entries = read_json(path)
    samples = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, (list, tuple)) or len(entry) != 5:
            raise ValueError(f"{path}: entry {i} is not [video_id, frame_path, mask_path, total_frames, query]")
        video_id, frame_path, mask_path, total_frames, query = entry
        expression_text(query, path, f"entry {i} (video {video_id})")
        samples.append((str(video_id), str(frame_path), str(mask_path), int(total_frames), query))
    return samples


class JHMDBSentencesDataset(ReferringDataset):
    """Evaluation clips centred on the chosen frame c (1-based), edge-padded within ``[1, total_frames]``.

    Target as A2D without ``labels``: ``boxes`` [1, 4], ``masks`` [1, H, W] (``part_mask`` at c - 1),
    ``valid`` [1], ``frames_idx`` [T] (1-based frame numbers), ``valid_indices`` [1], ``caption``,
    ``orig_size``, ``size``, ``image_id`` = ``v_<video>_f_<c>``.
    """

    def __init__(self, root: Path, samples: Sequence[Sample], transforms, num_frames: int):
        super().__init__(transforms, resample_invalid=False)
        self.root = Path(root)
        self.samples = list(samples)
        self.num_frames = num_frames

    def __len__(self) -> int:
        return len(self.samples)

    def load_clip(self, idx: int):
        video_id, frame_path, mask_path, total_frames, query = self.samples[idx]
        chosen_path = resolve_metadata_path(self.root, frame_path)
        chosen = int(chosen_path.stem)
        frame_numbers = centred_window(chosen, self.num_frames, 1, total_frames)
        frames = [read_rgb(chosen_path.parent / f"{n:05d}.png") for n in frame_numbers]
        masks_file = resolve_metadata_path(self.root, mask_path)
        masks = read_part_masks(masks_file)
        if not 1 <= chosen <= len(masks):
            raise ValueError(f"{masks_file}: no mask for frame {chosen} (it holds {len(masks)})")
        mask = masks[chosen - 1]
        check_same_size(frames[0], mask, str(chosen_path), str(masks_file))
        target = make_target(
            torch.from_numpy(np.ascontiguousarray(mask))[None],
            caption=normalize_caption(query),
            frames_idx=torch.tensor(frame_numbers),
            valid_indices=torch.tensor([frame_numbers.index(chosen)]),
            image_id=jhmdb_image_id(video_id, chosen),
        )
        return frames, target


def build(image_set: str, args) -> JHMDBSentencesDataset:
    """JHMDB-Sentences evaluation samples of ``args.jhmdb_path`` (evaluation only)."""
    root = Path(args.jhmdb_path)
    if not root.is_dir():
        raise FileNotFoundError(f"JHMDB-Sentences root {root} does not exist")
    if image_set != "val":
        raise ValueError(f"JHMDB-Sentences is evaluation only; got image_set {image_set!r}, expected 'val'")
    metadata_file = root / METADATA_FILE
    samples = read_samples_metadata(metadata_file)
    logger.info("%s: %d samples", metadata_file, len(samples))
    return JHMDBSentencesDataset(root, samples, make_video_transforms("val"), num_frames=getattr(args, "num_frames", 5))
