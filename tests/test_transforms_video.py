"""Clip transforms (datasets/transforms_video.py, transforms_image.py) against DATASETS.md §7."""
import random

import numpy as np
import pytest
import torch
from PIL import Image

from rvos.datasets.base import make_target
from rvos.datasets.transforms_image import make_image_transforms
from rvos.datasets.transforms_video import (IMAGENET_MEAN, IMAGENET_STD, Check, PhotometricDistort, RandomHorizontalFlip,
                                       RandomSizeCrop, ToNormalizedTensor, crop, make_video_transforms, resize,
                                       resized_hw, swap_left_right, _wrap_to_uint8)


def random_frames(count, height, width, seed=0):
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)) for _ in range(count)]


def rectangle_masks(count, height, width, box, empty=()):
    """Masks [count, H, W] with the inclusive rectangle box = (x1, y1, x2, y2), empty at indices ``empty``."""
    masks = torch.zeros((count, height, width), dtype=torch.bool)
    x1, y1, x2, y2 = box
    masks[:, y1:y2 + 1, x1:x2 + 1] = True
    for i in empty:
        masks[i] = False
    return masks


# ------------------------------------------------------------------------------------ captions

@pytest.mark.parametrize("caption, expected", [
    ("the dog on the left", "the dog on the right"),
    ("a man to the right of the left car", "a man to the left of the right car"),
    ("the bright red ball", "the bright red ball"),
    ("leftmost person, right-hand side", "rightmost person, left-hand side"),
    ("Left zebra", "Right zebra"),
    ("a copyright sign", "a copyright sign"),
])
def test_caption_swap_whole_words(caption, expected):
    assert swap_left_right(caption) == expected


def test_caption_swap_legacy_is_substring_replacement():
    assert swap_left_right("the bright dog on the left", legacy=True) == "the bleft dog on the right"


# ---------------------------------------------------------------------------------------- flip

def test_flip_mirrors_frames_masks_boxes_and_caption():
    frames = random_frames(3, 40, 60)
    masks = rectangle_masks(3, 40, 60, (5, 10, 14, 19), empty=(1,))
    target = make_target(masks, "the cat on the left")
    flipped_frames, out = RandomHorizontalFlip(p=1.0)(frames, target)
    for before, after in zip(frames, flipped_frames):
        assert np.array_equal(np.asarray(after), np.asarray(before)[:, ::-1])
    assert torch.equal(out["masks"], masks.flip(-1))
    width = 60
    assert torch.equal(out["boxes"][0], torch.tensor([width - 14.0, 10.0, width - 5.0, 19.0]))
    assert torch.equal(out["boxes"][1], torch.zeros(4)), "an invalid (all-zero) box stays zero"
    assert out["caption"] == "the cat on the right"
    assert target["caption"] == "the cat on the left", "the input target is not modified"


def test_flip_twice_restores_everything():
    frames = random_frames(2, 30, 50)
    target = make_target(rectangle_masks(2, 30, 50, (3, 4, 20, 25)), "left and right")
    flip = RandomHorizontalFlip(p=1.0)
    frames2, out = flip(*flip(frames, target))
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(frames, frames2))
    assert torch.equal(out["masks"], target["masks"]) and torch.equal(out["boxes"], target["boxes"])
    assert out["caption"] == "left and right"


def test_flip_probability_zero_is_identity():
    frames = random_frames(2, 30, 50)
    target = make_target(rectangle_masks(2, 30, 50, (3, 4, 20, 25)), "on the left")
    out_frames, out = RandomHorizontalFlip(p=0.0)(frames, target)
    assert out_frames is frames and out["caption"] == "on the left"


# -------------------------------------------------------------------------------------- resize

@pytest.mark.parametrize("hw, short_side, max_size, expected", [
    ((720, 1280), 360, 640, (360, 640)),     # long side exactly at the cap
    ((90, 160), 512, 640, (360, 640)),       # capped: s = round(640 * 90 / 160) = 360
    ((96, 128), 480, 640, (480, 640)),
    ((160, 90), 288, 640, (512, 288)),       # portrait: long = int(288 * 160 / 90) = 512
    ((90, 160), 100, None, (100, 177)),      # long side truncated: 100 * 160 / 90 = 177.8
    ((120, 200), 120, None, (120, 200)),     # short side already the target
    ((101, 300), 300, 640, (215, 638)),      # s = round(215.47) = 215, long = int(215 * 300 / 101) = 638
])
def test_resize_rule(hw, short_side, max_size, expected):
    assert resized_hw(*hw, short_side, max_size) == expected


def test_resize_scales_boxes_and_binarises_masks():
    frames = random_frames(2, 90, 160)
    masks = rectangle_masks(2, 90, 160, (40, 30, 79, 59))
    target = make_target(masks, "x")
    out_frames, out = resize(frames, target, 180, None)
    assert out_frames[0].size == (320, 180)
    assert torch.equal(out["size"], torch.tensor([180, 320]))
    assert out["masks"].dtype == torch.bool and out["masks"].shape == (2, 180, 320)
    assert torch.allclose(out["boxes"], target["boxes"] * 2)
    expected = torch.zeros((180, 320), dtype=torch.bool)
    expected[60:120, 80:160] = True
    assert torch.equal(out["masks"][0], expected)
    assert torch.equal(out["orig_size"], torch.tensor([90, 160])), "orig_size keeps the loaded size"


def test_crop_shifts_clips_boxes_and_slices_masks():
    frames = random_frames(2, 50, 80)
    masks = rectangle_masks(2, 50, 80, (10, 5, 39, 24))
    target = make_target(masks, "x")
    out_frames, out = crop(frames, target, top=10, left=20, height=30, width=40)
    assert out_frames[1].size == (40, 30)
    assert np.array_equal(np.asarray(out_frames[1]), np.asarray(frames[1])[10:40, 20:60])
    assert torch.equal(out["masks"], masks[:, 10:40, 20:60])
    assert torch.equal(out["boxes"][0], torch.tensor([0.0, 0.0, 19.0, 14.0]))
    assert torch.equal(out["size"], torch.tensor([30, 40]))


def test_random_size_crop_region_bounds():
    random.seed(3)
    frames = random_frames(2, 420, 700)
    target = make_target(rectangle_masks(2, 420, 700, (0, 0, 10, 10)), "x")
    for _ in range(20):
        out_frames, out = RandomSizeCrop(384, 600)(frames, target)
        width, height = out_frames[0].size
        assert 384 <= width <= 600 and 384 <= height <= 420
        assert out["masks"].shape[-2:] == (height, width)


# --------------------------------------------------------------------------------------- check

def test_check_recomputes_valid_from_boxes_and_zeroes_invalid():
    masks = rectangle_masks(3, 20, 30, (4, 4, 10, 12))
    masks[1] = False
    masks[1, 2:9, 7] = True  # one pixel wide: non-empty mask but degenerate box
    masks[2] = False
    target = make_target(masks, "x")
    assert target["valid"].tolist() == [1, 1, 0]
    _, out = Check()(None, target)
    assert out["valid"].tolist() == [1, 0, 0]
    assert torch.equal(out["boxes"][0], target["boxes"][0])
    assert torch.equal(out["boxes"][1:], torch.zeros(2, 4))


# ------------------------------------------------------------------------------- normalisation

def test_to_normalized_tensor_values_and_boxes():
    frames = [Image.new("RGB", (40, 20), (255, 0, 128)), Image.new("RGB", (40, 20), (0, 64, 255))]
    target = {"boxes": torch.tensor([[10.0, 5.0, 30.0, 15.0], [0.0, 0.0, 40.0, 20.0]])}
    clip, out = ToNormalizedTensor()(frames, target)
    assert clip.shape == (2, 3, 20, 40) and clip.dtype == torch.float32
    for t, colour in enumerate([(255, 0, 128), (0, 64, 255)]):
        for c in range(3):
            expected = (colour[c] / 255 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]
            assert torch.allclose(clip[t, c], torch.full((20, 40), expected), atol=1e-6)
    assert torch.allclose(out["boxes"], torch.tensor([[0.5, 0.5, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]]))


# --------------------------------------------------------------------------------- photometric

def test_uint8_cast_wraps_like_numpy_on_x86():
    values = np.array([[[300.7, -5.0, 255.9]]], dtype=np.float32)
    assert _wrap_to_uint8(values).tolist() == [[[44, 251, 255]]]


def test_photometric_is_independent_per_frame_and_keeps_geometry():
    random.seed(0)
    frame = random_frames(1, 24, 32)[0]
    target = {"caption": "x"}
    distort = PhotometricDistort.referformer()
    differing = 0
    for _ in range(10):
        out, out_target = distort([frame, frame], target)
        assert out[0].size == frame.size and out[0].mode == "RGB"
        assert out_target is target
        differing += not np.array_equal(np.asarray(out[0]), np.asarray(out[1]))
    assert differing >= 8, "two identical frames are distorted independently"


def test_sgmg_photometric_never_changes_hue_only_ranges():
    sgmg = PhotometricDistort.sgmg()
    assert sgmg.hue_delta == 0 and sgmg.contrast_range == (0.8, 1.2) and sgmg.saturation_range == (0.8, 1.2)
    assert sgmg.channel_swap_prob == 0.2 and sgmg.clip_brightness
    grey = Image.new("RGB", (8, 8), (100, 100, 100))
    random.seed(1)
    for _ in range(30):
        out = np.asarray(sgmg.distort(grey)).astype(int)
        assert (out == out[0, 0]).all()
        assert out.max() - out.min() == 0
        value = out[0, 0, 0]
        assert (100 - 32) * 0.8 - 1 <= value <= (100 + 32) * 1.2 * 1.2 + 1


# ------------------------------------------------------------------------------------ pipelines

def train_sample(count=3, height=96, width=128):
    frames = random_frames(count, height, width)
    masks = rectangle_masks(count, height, width, (20, 30, 59, 69), empty=(count - 1,))
    return frames, make_target(masks, "the left dog", labels=torch.zeros(count, dtype=torch.int64))


@pytest.mark.parametrize("after", [False, True])
def test_train_pipeline_outputs_are_consistent(after):
    frames, target = train_sample()
    transform = make_video_transforms("train", max_size=640, photometric_after_resize=after)
    random.seed(5)
    torch.manual_seed(5)
    for _ in range(8):
        clip, out = transform(frames, target)
        height, width = clip.shape[-2:]
        assert clip.shape[:2] == (3, 3)
        assert max(height, width) <= 640
        assert torch.equal(out["size"], torch.tensor([height, width]))
        assert out["masks"].shape == (3, height, width) and out["masks"].dtype == torch.bool
        assert out["valid"][-1] == 0 and torch.equal(out["boxes"][-1], torch.zeros(4))
        valid = out["valid"].bool()
        assert ((out["boxes"][valid] > 0) & (out["boxes"][valid] <= 1)).all()
        assert out["caption"] in ("the left dog", "the right dog")


def test_train_pipeline_is_reproducible_with_a_seed():
    frames, target = train_sample()
    transform = make_video_transforms("train")
    runs = []
    for _ in range(2):
        random.seed(11)
        torch.manual_seed(11)
        runs.append(transform(frames, target))
    assert torch.equal(runs[0][0], runs[1][0])
    assert torch.equal(runs[0][1]["boxes"], runs[1][1]["boxes"])


def test_pipeline_order_options():
    referformer = [type(t).__name__ for t in make_video_transforms("train").transforms]
    sgmg = [type(t).__name__ for t in make_video_transforms("train", photometric_after_resize=True).transforms]
    assert referformer == ["RandomHorizontalFlip", "PhotometricDistort", "RandomSelect", "ToNormalizedTensor"]
    assert sgmg == ["RandomSelect", "RandomHorizontalFlip", "PhotometricDistort", "ToNormalizedTensor"]
    assert make_video_transforms("train", photometric_after_resize=True).transforms[2].hue_delta == 0


def test_val_pipeline_resizes_to_360_capped_at_640():
    frames, target = train_sample(2, 90, 160)
    clip, out = make_video_transforms("val")(frames, target)
    assert clip.shape == (2, 3, 360, 640)
    frames, target = train_sample(2, 120, 150)
    clip, out = make_video_transforms("val")(frames, target)
    assert clip.shape == (2, 3, 360, 450)
    assert torch.equal(out["valid"], target["valid"]), "val keeps the mask-based valid flags"


def test_image_pipeline_gives_one_frame_clips():
    frames, target = train_sample(1, 300, 400)
    target["valid"] = torch.tensor([1])
    random.seed(2)
    for _ in range(6):
        clip, out = make_image_transforms("train")([frames[0]], target)
        assert clip.shape[:2] == (1, 3) and max(clip.shape[-2:]) <= 800
    clip, _ = make_image_transforms("val")([frames[0]], target)
    assert clip.shape == (1, 3, 360, 480)
