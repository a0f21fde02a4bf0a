"""RefCOCO/+/g loaders (images and pseudo-videos) and the concatenated datasets, on synthetic data."""
import json
import random
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as coco_mask

from rvos.datasets.collate import collate_fn
from rvos.datasets.image_to_clip import ImageToClipAugmenter
from rvos.datasets.refexp import REFCOCO_NAMES, RefExpDataset, RefExpSequenceDataset, build_sequences
from rvos.datasets.registry import build_dataset
from rvos.datasets.synthetic import make_dataset
from rvos.util.rle import decode_rle


@pytest.fixture(scope="module")
def coco_root(tmp_path_factory) -> Path:
    return make_dataset("refcoco", tmp_path_factory.mktemp("refcoco"), seed=0)


def identity(frames, target):
    return frames, target


def load_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def ann_file(root, name="refcoco", split="train"):
    return root / name / f"instances_{name}_{split}.json"


def polygon_mask(segmentation, height, width):
    rles = coco_mask.frPyObjects(segmentation, height, width)
    return np.logical_or.reduce([decode_rle(rle, "polygon") for rle in rles])


def still_augmenter():
    return ImageToClipAugmenter(perspective_scale=0.0, rotation=0.0, translate=0.0, brightness=0,
                                hue_saturation=0, motion_blur_prob=0.0)


def test_image_mode_targets_follow_the_annotations(coco_root):
    data = load_json(ann_file(coco_root))
    annotations = {a["image_id"]: a for a in data["annotations"]}
    dataset = RefExpDataset(coco_root / "train2014", ann_file(coco_root), identity, train=False)
    assert len(dataset) == len(data["images"])
    for idx, info in enumerate(sorted(data["images"], key=lambda i: i["id"])):
        frames, target = dataset.load_clip(idx)
        ann = annotations[info["id"]]
        image = np.array(Image.open(coco_root / "train2014" / info["file_name"]).convert("RGB"))
        assert len(frames) == 1 and np.array_equal(np.asarray(frames[0]), image)
        x, y, w, h = ann["bbox"]
        assert target["boxes"].tolist() == [[x, y, x + w, y + h]]
        assert np.array_equal(target["masks"][0].numpy(), polygon_mask(ann["segmentation"], *image.shape[:2]))
        assert target["labels"].tolist() == [ann["category_id"]]
        assert target["valid"].tolist() == [1]
        assert target["caption"] == info["caption"]
        assert target["image_id"].tolist() == [info["id"]]
        assert target["original_id"] == info["original_id"] and target["dataset_name"] == "refcoco"
        assert target["orig_size"].tolist() == [info["height"], info["width"]]


def test_image_mode_pipeline_gives_one_frame(coco_root):
    args = SimpleNamespace(coco_path=str(coco_root), masks=True)
    random.seed(0)
    torch.manual_seed(0)
    dataset = build_dataset("train", args, dataset_file="refcoco")
    batch = [dataset[i] for i in range(3)]
    for clip, target in batch:
        assert clip.shape[:2] == (1, 3) and target["masks"].shape == (1, *clip.shape[-2:])
        assert target["valid"].tolist() == [1]
    samples, targets = collate_fn(batch)
    assert samples.tensors.shape[:3] == (3, 1, 3)
    clip, target = build_dataset("val", args, dataset_file="refcoco+")[0]
    assert min(clip.shape[-2:]) == 360 or max(clip.shape[-2:]) == 640


def test_image_mode_without_masks(coco_root):
    args = SimpleNamespace(coco_path=str(coco_root), masks=False)
    _, target = build_dataset("val", args, dataset_file="refcocog")[0]
    assert "masks" not in target and target["boxes"].shape == (1, 4)


def test_pseudo_video_of_a_still_augmenter_repeats_the_image(coco_root):
    data = load_json(ann_file(coco_root))
    info = sorted(data["images"], key=lambda i: i["id"])[4]
    ann = next(a for a in data["annotations"] if a["image_id"] == info["id"])
    dataset = RefExpSequenceDataset(coco_root / "train2014", ann_file(coco_root), identity, num_frames=4,
                                    augmenter=still_augmenter())
    frames, target = dataset.load_clip(4)
    image = np.array(Image.open(coco_root / "train2014" / info["file_name"]).convert("RGB"))
    mask = polygon_mask(ann["segmentation"], *image.shape[:2])
    assert len(frames) == 4
    for frame, frame_mask in zip(frames, target["masks"]):
        assert np.array_equal(np.asarray(frame), image)
        assert np.array_equal(frame_mask.numpy(), mask)
    ys, xs = np.nonzero(mask)
    assert target["boxes"].tolist() == [[xs.min(), ys.min(), xs.max(), ys.max()]] * 4
    assert target["labels"].tolist() == [ann["category_id"]] * 4 and target["valid"].tolist() == [1] * 4


def test_pseudo_video_frames_are_warped_with_their_masks(coco_root):
    dataset = RefExpSequenceDataset(coco_root / "train2014", ann_file(coco_root), identity, num_frames=5)
    data = load_json(ann_file(coco_root))
    info = sorted(data["images"], key=lambda i: i["id"])[0]
    image = np.array(Image.open(coco_root / "train2014" / info["file_name"]).convert("RGB"))
    random.seed(5)
    frames, target = dataset.load_clip(0)
    originals = [i for i, f in enumerate(frames) if np.array_equal(np.asarray(f), image)]
    assert len(originals) == 1, "the original image is one of the frames, the others are augmented"
    assert all(np.asarray(f).shape == image.shape for f in frames)
    for t in range(5):
        mask = target["masks"][t].numpy()
        if mask.any():
            ys, xs = np.nonzero(mask)
            assert target["boxes"][t].tolist() == [xs.min(), ys.min(), xs.max(), ys.max()]
            colours = np.asarray(frames[t])[mask].astype(float)
            assert colours.std(axis=0).mean() < 60, "the warped mask still covers one uniformly coloured shape"
        assert target["valid"][t] == int(mask.any())


def test_pseudo_video_pipeline_and_box_clamp(coco_root):
    args = SimpleNamespace(coco_path=str(coco_root), num_frames=3, max_size=640)
    random.seed(1)
    torch.manual_seed(1)
    dataset = build_sequences("refcoco", "train", args)
    for idx in range(4):
        clip, target = dataset[idx]
        assert clip.shape[:2] == (3, 3)
        assert (target["boxes"] >= 1e-6).all()
        empty = ~target["masks"].flatten(1).any(1)
        assert torch.allclose(target["boxes"][empty], torch.full_like(target["boxes"][empty], 1e-6))


def test_small_images_are_skipped_when_asked(coco_root):
    dataset = RefExpSequenceDataset(coco_root / "train2014", ann_file(coco_root), identity, num_frames=2,
                                    min_short_side=10_000)
    dataset.max_resample_attempts = 5
    with pytest.raises(RuntimeError, match="no usable sample"):
        dataset[0]
    usable = RefExpSequenceDataset(coco_root / "train2014", ann_file(coco_root), identity, num_frames=2,
                                   min_short_side=200)
    assert all(usable.is_usable(i) for i in range(len(usable)))


def write_modified(root: Path, change) -> Path:
    data = load_json(ann_file(root))
    change(data)
    path = root / "refcoco" / "instances_refcoco_modified.json"
    path.write_text(json.dumps(data))
    return path


def test_degenerate_box_is_invalid_and_redrawn(coco_root):
    first_id = min(i["id"] for i in load_json(ann_file(coco_root))["images"])

    def flatten_first(data):
        for ann in data["annotations"]:
            if ann["image_id"] == first_id:
                ann["bbox"][2] = 0.0

    path = write_modified(coco_root, flatten_first)
    dataset = RefExpDataset(coco_root / "train2014", path, identity, train=True)
    _, raw = dataset.load_clip(0)
    assert raw["valid"].tolist() == [0] and raw["boxes"].tolist() == [[0.0] * 4]
    random.seed(0)
    _, target = dataset[0]
    assert target["valid"].tolist() == [1] and target["image_id"].item() != first_id


def test_two_annotations_for_one_sentence_is_an_error(coco_root):
    image_id = load_json(ann_file(coco_root))["annotations"][0]["image_id"]

    def duplicate(data):
        data["annotations"].append(dict(data["annotations"][0], id=10_000))

    dataset = RefExpDataset(coco_root / "train2014", write_modified(coco_root, duplicate), identity, train=False)
    position = [info["id"] for info in dataset.expressions.images].index(image_id)
    with pytest.raises(ValueError, match="exactly one"):
        dataset.load_clip(position)


def test_concatenated_datasets(coco_root, tmp_path):
    ytvos_root = make_dataset("ytvos", tmp_path / "ytvos", seed=0, num_videos=2, num_valid_videos=1,
                              num_test_videos=1)
    davis_root = make_dataset("davis", tmp_path / "davis", seed=0, num_videos=1, num_valid_videos=1)
    args = SimpleNamespace(coco_path=str(coco_root), ytvos_path=str(ytvos_root), davis_path=str(davis_root),
                           num_frames=2, max_size=640, masks=True)
    images = [len(load_json(ann_file(coco_root, name))["images"]) for name in REFCOCO_NAMES]
    ytvos = build_dataset("train", args, dataset_file="ytvos")
    davis = build_dataset("train", args, dataset_file="davis")
    everything = build_dataset("train", args, dataset_file="all")
    joint = build_dataset("train", args, dataset_file="joint")
    mixed = build_dataset("train", args, dataset_file="ytvos_joint_davis")
    assert len(everything) == sum(images)
    assert len(joint) == sum(images) + len(ytvos)
    assert len(mixed) == 5 * len(davis) + len(ytvos)
    random.seed(0)
    torch.manual_seed(0)
    clip, target = joint[0]
    assert clip.shape[0] == 2 and target["dataset_name"] == "refcoco"
    clip, target = joint[len(joint) - 1]
    assert clip.shape[0] == 2 and "video" in target
    clip, target = everything[len(everything) - 1]
    assert clip.shape[0] == 1 and target["dataset_name"] == "refcocog"
    with pytest.raises(ValueError, match="not supported"):
        build_dataset("train", args, dataset_file="refclef")
