"""A2D-Sentences (single annotated frame) and JHMDB-Sentences loaders on synthetic data."""
import json
import random
import shutil
from functools import lru_cache
from pathlib import Path
from types import SimpleNamespace

import av
import h5py
import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from rvos.datasets.a2d import A2DSentencesDataset, derive_single_frame_annotations, read_single_frame_annotations
from rvos.datasets.jhmdb import JHMDBSentencesDataset, read_samples_metadata, resolve_metadata_path
from rvos.datasets.registry import build_dataset
from rvos.datasets.synthetic import make_dataset


@pytest.fixture(scope="module")
def a2d_root(tmp_path_factory) -> Path:
    return make_dataset("a2d", tmp_path_factory.mktemp("a2d"), seed=0)


@pytest.fixture(scope="module")
def jhmdb_root(tmp_path_factory) -> Path:
    return make_dataset("jhmdb", tmp_path_factory.mktemp("jhmdb"), seed=0)


def identity(frames, target):
    return frames, target


def load_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


@lru_cache(maxsize=None)
def decoded_frames(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


def h5_mask(path: Path, instance_id: int) -> np.ndarray:
    """The instance's mask [H, W] from an h5 file, following DATASETS.md §4.2 step by step."""
    with h5py.File(path, "r") as f:
        instances = list(np.asarray(f["instance"]))
        masks = np.asarray(f["reMask"])
    if len(instances) == 1:
        masks = masks[np.newaxis]
    masks = masks.swapaxes(1, 2)
    return masks[instances.index(instance_id)].astype(bool)


def a2d_dataset(root, split, num_frames):
    name = "train" if split == "train" else "test"
    samples = read_single_frame_annotations(root / f"a2d_sentences_single_frame_{name}_annotations.json")
    return A2DSentencesDataset(root, samples, identity, num_frames=num_frames, train=split == "train")


def check_a2d_target(root, sample, frames, target, positions):
    query, video_id, frame_idx, instance_id = sample
    video = decoded_frames(root / "Release/clips320H" / f"{video_id}.mp4")
    for frame, position in zip(frames, positions):
        assert np.array_equal(np.asarray(frame), video[position])
    mask = h5_mask(root / "text_annotations/a2d_annotation_with_instances" / video_id / f"{frame_idx:05d}.h5",
                   instance_id)
    assert target["masks"].shape == (1, *mask.shape)
    assert np.array_equal(target["masks"][0].numpy(), mask)
    ys, xs = np.nonzero(mask)
    assert target["boxes"].tolist() == [[xs.min(), ys.min(), xs.max(), ys.max()]]
    assert target["valid"].tolist() == [1] and target["labels"].tolist() == [0]
    assert target["valid_indices"].tolist() == [positions.index(frame_idx - 1)]
    assert target["image_id"] == f"v_{video_id}_f_{frame_idx}_i_{instance_id}"
    assert target["caption"] == " ".join(query.lower().split())
    assert target["orig_size"].tolist() == list(mask.shape) == list(video.shape[1:3])


def test_a2d_train_samples_are_the_json_entries_in_order(a2d_root):
    entries = load_json(a2d_root / "a2d_sentences_single_frame_train_annotations.json")
    dataset = a2d_dataset(a2d_root, "train", 5)
    assert [list(s) for s in dataset.samples] == entries


def test_a2d_train_clip_is_sampled_around_the_annotated_frame(a2d_root):
    dataset = a2d_dataset(a2d_root, "train", 5)
    random.seed(0)
    for idx, sample in enumerate(dataset.samples):
        frames, target = dataset.load_clip(idx)
        positions = target["frames_idx"].tolist()
        frame_id = sample[2] - 1
        assert len(positions) == 5 and positions == sorted(positions) and frame_id in positions
        check_a2d_target(a2d_root, sample, frames, target, positions)


def test_a2d_val_window_is_centred_and_edge_padded(a2d_root):
    dataset = a2d_dataset(a2d_root, "val", 5)
    edge_cases = 0
    for idx, sample in enumerate(dataset.samples):
        frames, target = dataset.load_clip(idx)
        positions = target["frames_idx"].tolist()
        num_video_frames = len(decoded_frames(a2d_root / "Release/clips320H" / f"{sample[1]}.mp4"))
        frame_id = sample[2] - 1
        expected = [min(max(i, 0), num_video_frames - 1) for i in range(frame_id - 2, frame_id + 3)]
        assert positions == expected
        edge_cases += frame_id < 2 or frame_id > num_video_frames - 3
        check_a2d_target(a2d_root, sample, frames, target, positions)
    train = a2d_dataset(a2d_root, "train", 5)
    for idx, sample in enumerate(train.samples):
        num_video_frames = len(decoded_frames(a2d_root / "Release/clips320H" / f"{sample[1]}.mp4"))
        edge_cases += sample[2] in (1, num_video_frames)
    assert edge_cases > 0, "annotated frames at the first or last frame are exercised"


def test_a2d_single_instance_and_extra_mask_files_are_read(a2d_root):
    annotation_dir = a2d_root / "text_annotations/a2d_annotation_with_instances"
    shapes = {}
    for path in annotation_dir.glob("*/*.h5"):
        with h5py.File(path, "r") as f:
            shapes[path] = (len(np.asarray(f["instance"])), np.asarray(f["reMask"]).shape)
    assert any(n == 1 and len(shape) == 2 for n, shape in shapes.values()), "a 2-D single-instance reMask"
    assert any(len(shape) == 3 and shape[0] > n for n, shape in shapes.values()), "a file with an extra mask"
    covered = set()
    for split in ("train", "val"):
        dataset = a2d_dataset(a2d_root, split, 3)
        random.seed(1)
        for idx, sample in enumerate(dataset.samples):
            path = annotation_dir / sample[1] / f"{sample[2]:05d}.h5"
            frames, target = dataset.load_clip(idx)
            assert np.array_equal(target["masks"][0].numpy(), h5_mask(path, sample[3]))
            covered.add(path)
    assert any(len(shapes[p][1]) == 2 for p in covered)


def test_a2d_built_pipelines(a2d_root):
    args = SimpleNamespace(a2d_path=str(a2d_root), num_frames=3, max_size=640)
    random.seed(2)
    torch.manual_seed(2)
    clip, target = build_dataset("train", args, dataset_file="a2d")[0]
    assert clip.shape[:2] == (3, 3) and target["masks"].shape == (1, *clip.shape[-2:])
    assert target["valid"].tolist() == [1]
    clip, target = build_dataset("val", args, dataset_file="a2d")[0]
    assert min(clip.shape[-2:]) == 360 or max(clip.shape[-2:]) == 640


# ----------------------------------------------------------------------------------------- JHMDB

def test_metadata_paths_resolve_under_the_configured_root(tmp_path):
    root = tmp_path / "somewhere"
    recorded = "./jhmdb_sentences/Rename_Images/walk/v1/00003.png"
    assert resolve_metadata_path(root, recorded) == root / "Rename_Images/walk/v1/00003.png"
    assert resolve_metadata_path(root, "../datasets/jhmdb_sentences/puppet_mask/walk/v1/puppet_mask.mat") == \
        root / "puppet_mask/walk/v1/puppet_mask.mat"
    with pytest.raises(ValueError, match="contains none of"):
        resolve_metadata_path(root, "images/00001.png")


def test_jhmdb_windows_masks_and_ids(jhmdb_root):
    entries = load_json(jhmdb_root / "jhmdb_sentences_samples_metadata.json")
    dataset = JHMDBSentencesDataset(jhmdb_root, read_samples_metadata(
        jhmdb_root / "jhmdb_sentences_samples_metadata.json"), identity, num_frames=5)
    assert len(dataset) == len(entries)
    shorter_masks_seen = 0
    for idx, (video_id, frame_path, mask_path, total, query) in enumerate(entries):
        frames, target = dataset.load_clip(idx)
        relative = Path(frame_path.replace("./jhmdb_sentences/", ""))
        chosen = int(relative.stem)
        expected = [min(max(i, 1), total) for i in range(chosen - 2, chosen + 3)]
        assert target["frames_idx"].tolist() == expected
        assert target["valid_indices"].tolist() == [expected.index(chosen)]
        for frame, number in zip(frames, expected):
            png = np.array(Image.open(jhmdb_root / relative.parent / f"{number:05d}.png").convert("RGB"))
            assert np.array_equal(np.asarray(frame), png)
        part_mask = scipy.io.loadmat(str(jhmdb_root / mask_path.replace("./jhmdb_sentences/", "")))["part_mask"]
        num_pngs = len(list((jhmdb_root / relative.parent).glob("*.png")))
        shorter_masks_seen += part_mask.shape[2] < num_pngs
        assert total == min(num_pngs, part_mask.shape[2])
        assert np.array_equal(target["masks"][0].numpy(), part_mask[:, :, chosen - 1] > 0)
        assert "labels" not in target
        assert target["image_id"] == f"v_{video_id}_f_{chosen}"
        assert target["caption"] == " ".join(query.lower().split())
    assert shorter_masks_seen > 0, "a puppet mask shorter than its frames is exercised"


def test_jhmdb_is_evaluation_only(jhmdb_root):
    args = SimpleNamespace(jhmdb_path=str(jhmdb_root), num_frames=3)
    clip, target = build_dataset("val", args, dataset_file="jhmdb")[0]
    assert clip.shape == (3, 3, 360, 480)
    with pytest.raises(ValueError, match="evaluation only"):
        build_dataset("train", args, dataset_file="jhmdb")


@pytest.mark.parametrize("split, file_name", [("train", "train"), ("val", "test")])
def test_a2d_samples_derived_from_raw_files_equal_the_shipped_json(a2d_root, split, file_name):
    shipped = load_json(a2d_root / f"a2d_sentences_single_frame_{file_name}_annotations.json")
    assert [list(s) for s in derive_single_frame_annotations(a2d_root, split)] == shipped


def test_a2d_build_derives_missing_sample_file(a2d_root, tmp_path):
    root = tmp_path / "a2d"
    shutil.copytree(a2d_root, root)
    (root / "a2d_sentences_single_frame_test_annotations.json").unlink()
    dataset = build_dataset("val", SimpleNamespace(a2d_path=str(root), num_frames=2), dataset_file="a2d")
    shipped = load_json(a2d_root / "a2d_sentences_single_frame_test_annotations.json")
    assert [list(s) for s in dataset.samples] == shipped
