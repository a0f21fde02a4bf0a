"""Ref-YouTube-VOS and Ref-DAVIS17 training loaders on synthetic data written by the generator."""
import json
import math
import random
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from rvos.datasets.categories import DAVIS_CATEGORIES, YTVOS_CATEGORIES
from rvos.datasets.collate import collate_fn
from rvos.datasets.registry import build_dataset
from rvos.datasets.synthetic import make_dataset
from rvos.datasets.transforms_video import make_video_transforms
from rvos.datasets.ytvos import YTVOSDataset


@pytest.fixture(scope="module")
def ytvos_root(tmp_path_factory) -> Path:
    return make_dataset("ytvos", tmp_path_factory.mktemp("ytvos"), seed=0)


@pytest.fixture(scope="module")
def davis_root(tmp_path_factory) -> Path:
    return make_dataset("davis", tmp_path_factory.mktemp("davis"), seed=1)


def load_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def identity(frames, target):
    return frames, target


def ytvos_dataset(root, num_frames, transforms=identity, **kwargs):
    return YTVOSDataset(root / "train", root / "meta_expressions" / "train" / "meta_expressions.json",
                        transforms, num_frames=num_frames, **kwargs)


def inclusive_box(mask: np.ndarray):
    ys, xs = np.nonzero(mask)
    return [float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())]


def test_index_has_one_sample_per_expression_and_start(ytvos_root):
    videos = load_json(ytvos_root / "meta_expressions/train/meta_expressions.json")["videos"]
    num_frames = 5
    dataset = ytvos_dataset(ytvos_root, num_frames)
    expected = [(video, exp_id, start)
                for video, entry in videos.items()
                for exp_id in entry["expressions"]
                for start in range(0, len(entry["frames"]), num_frames)]
    assert [(s.video, s.exp_id, s.frame_id) for s in dataset.samples] == expected
    total = sum(math.ceil(len(e["frames"]) / num_frames) * len(e["expressions"]) for e in videos.values())
    assert len(dataset) == total


def test_every_frame_target_matches_the_annotation_files(ytvos_root):
    """With T = 1 the index visits every (expression, frame): masks, boxes, valid, labels, captions."""
    videos = load_json(ytvos_root / "meta_expressions/train/meta_expressions.json")["videos"]
    objects = load_json(ytvos_root / "train/meta.json")["videos"]
    dataset = ytvos_dataset(ytvos_root, num_frames=1)
    absent_seen = 0
    for idx, sample in enumerate(dataset.samples):
        frames, target = dataset.load_clip(idx)
        frame_name = sample.frames[sample.frame_id]
        expression = videos[sample.video]["expressions"][sample.exp_id]
        obj = objects[sample.video]["objects"][expression["obj_id"]]
        png = np.array(Image.open(ytvos_root / "train/Annotations" / sample.video / f"{frame_name}.png"))
        jpeg = np.array(Image.open(ytvos_root / "train/JPEGImages" / sample.video / f"{frame_name}.jpg").convert("RGB"))
        expected_mask = png == int(expression["obj_id"])
        assert np.array_equal(np.asarray(frames[0]), jpeg)
        assert target["masks"].dtype == torch.bool
        assert np.array_equal(target["masks"][0].numpy(), expected_mask)
        present = frame_name in obj["frames"]
        assert target["valid"].tolist() == [int(present)]
        if present:
            assert target["boxes"][0].tolist() == inclusive_box(expected_mask)
        else:
            absent_seen += 1
            assert target["boxes"][0].tolist() == [0.0, 0.0, 0.0, 0.0]
        assert target["labels"].tolist() == [YTVOS_CATEGORIES.index(obj["category"])]
        assert target["caption"] == " ".join(expression["exp"].lower().split())
        assert target["frames_idx"].tolist() == [sample.frame_id]
        assert target["orig_size"].tolist() == list(png.shape) == target["size"].tolist()
    assert absent_seen > 0, "the synthetic data has objects absent from some frames"


def test_clip_frames_follow_sampler_s(ytvos_root):
    dataset = ytvos_dataset(ytvos_root, num_frames=5)
    random.seed(4)
    for idx in range(0, len(dataset), 3):
        sample = dataset.samples[idx]
        frames, target = dataset.load_clip(idx)
        positions = target["frames_idx"].tolist()
        length = len(sample.frames)
        assert len(positions) == len(frames) == 5 and positions == sorted(positions)
        assert sample.frame_id in positions
        assert {max(0, sample.frame_id - d) for d in (1, 2, 3)} & set(positions)
        assert {min(length - 1, sample.frame_id + d) for d in (1, 2, 3)} & set(positions)
        for frame, position in zip(frames, positions):
            path = ytvos_root / "train/JPEGImages" / sample.video / f"{sample.frames[position]}.jpg"
            assert np.array_equal(np.asarray(frame), np.array(Image.open(path).convert("RGB")))


def test_clip_reversal_option(ytvos_root):
    dataset = ytvos_dataset(ytvos_root, num_frames=5, reverse_prob=1.0)
    random.seed(0)
    _, target = dataset.load_clip(0)
    positions = target["frames_idx"].tolist()
    assert positions == sorted(positions, reverse=True)


def test_transformed_samples_and_collate(ytvos_root):
    args = SimpleNamespace(dataset_file="ytvos", ytvos_path=str(ytvos_root), num_frames=3, max_size=640)
    dataset = build_dataset("train", args)
    random.seed(1)
    torch.manual_seed(1)
    batch = [dataset[i] for i in (0, 7, 13)]
    for clip, target in batch:
        height, width = clip.shape[-2:]
        assert clip.shape[:2] == (3, 3) and clip.dtype == torch.float32
        assert target["masks"].shape == (3, height, width)
        assert target["size"].tolist() == [height, width]
        assert target["valid"].any()
        valid = target["valid"].bool()
        assert ((target["boxes"][valid] > 0) & (target["boxes"][valid] <= 1)).all()
        assert torch.equal(target["boxes"][~valid], torch.zeros(int((~valid).sum()), 4))
    samples, targets = collate_fn(batch)
    assert samples.tensors.shape[:3] == (3, 3, 3)
    assert samples.tensors.shape[-1] % 32 == 0 and samples.tensors.shape[-2] % 32 == 0
    assert [t["caption"] for t in targets] == [t["caption"] for _, t in batch]


def test_same_seed_same_sample(ytvos_root):
    dataset = ytvos_dataset(ytvos_root, 5, transforms=make_video_transforms("train"))
    outputs = []
    for _ in range(2):
        random.seed(9)
        torch.manual_seed(9)
        outputs.append(dataset[2])
    assert torch.equal(outputs[0][0], outputs[1][0])
    assert torch.equal(outputs[0][1]["frames_idx"], outputs[1][1]["frames_idx"])


def rewrite_expressions_to_absent_object(root: Path, video_filter=None) -> None:
    """Point expressions at an object id (9) that is in meta.json but in no annotation PNG."""
    expressions_path = root / "meta_expressions/train/meta_expressions.json"
    objects_path = root / "train/meta.json"
    expressions, objects = load_json(expressions_path), load_json(objects_path)
    for video, entry in expressions["videos"].items():
        if video_filter is None or video == video_filter:
            objects["videos"][video]["objects"]["9"] = {"category": "zebra", "frames": []}
            for expression in entry["expressions"].values():
                expression["obj_id"] = "9"
    expressions_path.write_text(json.dumps(expressions))
    objects_path.write_text(json.dumps(objects))


def test_sample_without_valid_frame_is_redrawn(tmp_path):
    root = make_dataset("ytvos", tmp_path / "ytvos", seed=3, num_videos=2, num_valid_videos=1, num_test_videos=1)
    first_video = next(iter(load_json(root / "meta_expressions/train/meta_expressions.json")["videos"]))
    rewrite_expressions_to_absent_object(root, first_video)
    dataset = ytvos_dataset(root, 3, transforms=make_video_transforms("val"))
    _, raw = dataset.load_clip(0)
    assert dataset.samples[0].video == first_video and not raw["valid"].any()
    random.seed(0)
    clip, target = dataset[0]
    assert target["valid"].any() and target["video"] != first_video


def test_resampling_is_bounded(tmp_path):
    root = make_dataset("ytvos", tmp_path / "ytvos", seed=3, num_videos=2, num_valid_videos=1, num_test_videos=1)
    rewrite_expressions_to_absent_object(root)
    dataset = ytvos_dataset(root, 2, transforms=make_video_transforms("val"))
    dataset.max_resample_attempts = 10
    with pytest.raises(RuntimeError, match="no usable sample with a valid frame"):
        dataset[0]


def test_unknown_category_is_a_clear_error(tmp_path):
    root = make_dataset("ytvos", tmp_path / "ytvos", seed=3, num_videos=2, num_valid_videos=1, num_test_videos=1)
    objects_path = root / "train/meta.json"
    objects = load_json(objects_path)
    video = next(iter(objects["videos"]))
    objects["videos"][video]["objects"]["1"]["category"] = "unicorn"
    objects_path.write_text(json.dumps(objects))
    with pytest.raises(ValueError, match=r"meta\.json.*unicorn"):
        ytvos_dataset(root, 5)


# ----------------------------------------------------------------------------------------- DAVIS

FIXED_SEQUENCE_NAMES = {"clasic-car": "classic-car", "dog-scale": "dogs-scale", "motor-bike": "motorbike"}
ANNOTATION_FILES = (("Davis17_annot1.txt", "utf-8"), ("Davis17_annot1_full_video.txt", "utf-8"),
                    ("Davis17_annot2.txt", "latin-1"), ("Davis17_annot2_full_video.txt", "latin-1"))


def davis_expressions_from_text(root: Path) -> dict:
    """DATASETS.md §2.2 from the raw text files: {sequence: [(obj_id, expression) in exp_id order]}."""
    per_file = []
    for name, encoding in ANNOTATION_FILES:
        entries = {}
        with open(root / "davis_text_annotations" / name, encoding=encoding) as f:
            for line in f:
                tokens = line.strip().split()
                if not tokens:
                    continue
                sequence = FIXED_SEQUENCE_NAMES.get(tokens[0], tokens[0])
                entries.setdefault(sequence, []).append((tokens[1], " ".join(tokens[2:])[1:-1]))
        per_file.append({seq: sorted(items, key=lambda item: item[0]) for seq, items in entries.items()})
    ordered = {}
    for sequence in per_file[0]:
        ordered[sequence] = [entry for group in zip(*(f[sequence] for f in per_file)) for entry in group]
    return ordered


def test_davis_expressions_in_spec_order(davis_root):
    args = SimpleNamespace(davis_path=str(davis_root), num_frames=100, max_size=640)
    dataset = build_dataset("train", args, dataset_file="davis")
    expected = davis_expressions_from_text(davis_root)
    seen = {}
    for sample in dataset.samples:
        assert sample.frame_id == 0, "T larger than every video: one sample per expression"
        seen.setdefault(sample.video, []).append((str(sample.referent), sample.caption))
        assert int(sample.exp_id) == len(seen[sample.video]) - 1
    assert seen, "the train split has expressions"
    for sequence, items in seen.items():
        assert items == expected[sequence]
        num_objects = len(items) // 4
        for k in range(num_objects):
            assert len({obj for obj, _ in items[4 * k:4 * k + 4]}) == 1, "object k owns exp_ids 4k..4k+3"


def test_davis_targets_use_davis_categories(davis_root):
    objects = load_json(davis_root / "train/meta.json")["videos"]
    dataset = YTVOSDataset(davis_root / "train", davis_root / "meta_expressions/train/meta_expressions.json",
                           identity, num_frames=2, categories={n: i for i, n in enumerate(DAVIS_CATEGORIES)})
    random.seed(2)
    for idx in (0, len(dataset) - 1):
        sample = dataset.samples[idx]
        frames, target = dataset.load_clip(idx)
        category = objects[sample.video]["objects"][str(sample.referent)]["category"]
        assert target["labels"].tolist() == [DAVIS_CATEGORIES.index(category)] * 2
        for mask, position in zip(target["masks"], target["frames_idx"].tolist()):
            png = np.array(Image.open(davis_root / "train/Annotations" / sample.video
                                      / f"{sample.frames[position]}.png"))
            assert np.array_equal(mask.numpy(), png == sample.referent)


def test_davis_has_no_val_training_split(davis_root):
    with pytest.raises(ValueError, match="inference.py"):
        build_dataset("val", SimpleNamespace(davis_path=str(davis_root)), dataset_file="davis")
