"""MeViS training loader (union masks of multi-object expressions) on synthetic data."""
import json
import random
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from rvos.datasets.mevis import MeViSDataset
from rvos.datasets.registry import build_dataset
from rvos.datasets.synthetic import make_dataset
from rvos.util.rle import decode_rle


@pytest.fixture(scope="module")
def mevis_root(tmp_path_factory) -> Path:
    return make_dataset("mevis", tmp_path_factory.mktemp("mevis"), seed=0)


def identity(frames, target):
    return frames, target


def load_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def decoded(entry, height, width):
    if entry is None:
        return np.zeros((height, width), dtype=bool)
    return decode_rle(entry, "mask_dict entry")


def test_every_frame_is_the_union_of_the_referred_objects(mevis_root):
    videos = load_json(mevis_root / "train/meta_expressions.json")["videos"]
    mask_dict = load_json(mevis_root / "train/mask_dict.json")
    dataset = MeViSDataset(mevis_root / "train", identity, num_frames=1)
    counts_seen, empty_union_seen, overlap_or_disjoint_multi = set(), 0, 0
    for idx, sample in enumerate(dataset.samples):
        frames, target = dataset.load_clip(idx)
        expression = videos[sample.video]["expressions"][sample.exp_id]
        frame_name = sample.frames[sample.frame_id]
        jpeg = Image.open(mevis_root / "train/JPEGImages" / sample.video / f"{frame_name}.jpg")
        height, width = jpeg.height, jpeg.width
        parts = [decoded(mask_dict[str(a)][sample.frame_id], height, width) for a in expression["anno_id"]]
        union = np.logical_or.reduce(parts)
        counts_seen.add(len(parts))
        assert np.array_equal(target["masks"][0].numpy(), union)
        if union.any():
            ys, xs = np.nonzero(union)
            assert target["boxes"][0].tolist() == [xs.min(), ys.min(), xs.max(), ys.max()]
            assert target["valid"].tolist() == [1]
            overlap_or_disjoint_multi += len(parts) > 1 and sum(p.any() for p in parts) > 1
        else:
            empty_union_seen += 1
            assert target["valid"].tolist() == [0] and target["boxes"][0].tolist() == [0, 0, 0, 0]
        assert target["labels"].tolist() == [0]
        assert target["caption"] == " ".join(expression["exp"].lower().split())
    assert {1, 2, 3} <= counts_seen, "expressions with 1, 2 and 3 objects are exercised"
    assert overlap_or_disjoint_multi > 0, "some frames hold several referred objects at once"


def test_null_frames_leave_only_the_other_objects(mevis_root):
    mask_dict = load_json(mevis_root / "train/mask_dict.json")
    dataset = MeViSDataset(mevis_root / "train", identity, num_frames=1)
    checked = 0
    for idx, sample in enumerate(dataset.samples):
        entries = [mask_dict[a][sample.frame_id] for a in sample.referent]
        if len(entries) > 1 and any(e is None for e in entries) and any(e is not None for e in entries):
            _, target = dataset.load_clip(idx)
            present = [decode_rle(e, "mask_dict entry") for e in entries if e is not None]
            assert np.array_equal(target["masks"][0].numpy(), np.logical_or.reduce(present))
            checked += 1
    assert checked > 0, "the synthetic data has multi-object frames where one object is null"


def test_training_clips(mevis_root):
    args = SimpleNamespace(mevis_path=str(mevis_root), num_frames=4, max_size=640, clip_reverse_prob=0.0)
    dataset = build_dataset("train", args, dataset_file="mevis")
    random.seed(0)
    torch.manual_seed(0)
    for idx in range(0, len(dataset), max(1, len(dataset) // 6)):
        clip, target = dataset[idx]
        assert clip.shape[:2] == (4, 3)
        assert target["masks"].shape == (4, *clip.shape[-2:])
        assert target["valid"].any() and target["labels"].tolist() == [0] * 4
        assert len(target["frames_idx"]) == 4


def test_mask_dict_length_mismatch_names_the_file(tmp_path):
    root = make_dataset("mevis", tmp_path / "mevis", seed=2, num_videos=1, num_valid_u_videos=1,
                        num_valid_videos=1)
    mask_path = root / "train/mask_dict.json"
    mask_dict = load_json(mask_path)
    first = next(iter(mask_dict))
    mask_dict[first] = mask_dict[first][:-1]
    mask_path.write_text(json.dumps(mask_dict))
    with pytest.raises(ValueError, match=r"mask_dict\.json: anno_id .* entries but video"):
        MeViSDataset(root / "train", identity, num_frames=5)
