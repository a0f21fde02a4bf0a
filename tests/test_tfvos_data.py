"""TFVOS training data: each sampled frame's prompt frame by the original rule, masked with the ground truth, through
the clip's own transform (or an independent draw, as the original), batched by the collate function; the recipes."""
import random
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from rvos import opts
from rvos.datasets.collate import collate_fn
from rvos.datasets.prompt_frames import enable_prompt_frames, prompt_position
from rvos.datasets.registry import build_dataset
from rvos.datasets.synthetic import make_dataset
from rvos.datasets.transforms_video import make_video_transforms
from rvos.datasets.ytvos import YTVOSDataset
from rvos.models.tfvos import PROMPT_FRAMES_KEY, PROMPT_MASK_KEY

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ytvos_root(tmp_path_factory) -> Path:
    return make_dataset("ytvos", tmp_path_factory.mktemp("tfvos_ytvos"), seed=2, num_videos=2, num_valid_videos=1,
                        num_test_videos=1, num_frames=7, min_frames=5)


def dataset(root: Path, transforms, independent: bool = False, num_frames: int = 3) -> YTVOSDataset:
    data = YTVOSDataset(root / "train", root / "meta_expressions" / "train" / "meta_expressions.json", transforms,
                        num_frames=num_frames)
    enable_prompt_frames(data, "tfvos", independent)
    return data


def test_prompt_rule_of_the_original():
    """t + 1 for even t, t - 1 for odd t and for the last frame (TF2 datasets/ytvos.py)."""
    assert [prompt_position(t, 5) for t in range(5)] == [1, 0, 3, 2, 3]
    assert [prompt_position(t, 6) for t in range(6)] == [1, 0, 3, 2, 5, 4]
    assert [prompt_position(t, 2) for t in range(2)] == [1, 0]
    assert prompt_position(0, 1) == 0
    with pytest.raises(ValueError, match="outside"):
        prompt_position(5, 5)


def test_prompt_is_the_neighbour_masked_by_its_ground_truth(ytvos_root):
    """With the deterministic evaluation transform, every prompt equals the neighbour frame (by the rule) with
    the pixels outside the object's annotation zeroed, then resized and normalised like the clip."""
    transforms = make_video_transforms("val")
    data = dataset(ytvos_root, transforms)
    random.seed(0)
    for index in range(len(data)):
        clip, target = data[index]
        sample = data.samples[index]
        prompts = target[PROMPT_FRAMES_KEY]
        assert prompts.shape == clip.shape
        for row, position in enumerate(target["frames_idx"].tolist()):
            neighbour = prompt_position(position, len(sample.frames))
            name = sample.frames[neighbour]
            frame = np.asarray(Image.open(ytvos_root / "train" / "JPEGImages" / sample.video / f"{name}.jpg")
                               .convert("RGB"))
            labels = np.asarray(Image.open(ytvos_root / "train" / "Annotations" / sample.video / f"{name}.png"))
            masked = Image.fromarray(np.where((labels == sample.referent)[..., None], frame, 0).astype(np.uint8))
            expected, _ = transforms([masked], {"masks": torch.zeros(1, *labels.shape, dtype=torch.bool)})
            assert torch.equal(prompts[row], expected[0]), (sample.video, position, neighbour)


def geometric_sizes(data, count: int, seed: int):
    random.seed(seed)
    return [(tuple(clip.shape[-2:]), tuple(target[PROMPT_FRAMES_KEY].shape[-2:]))
            for clip, target in (data[i % len(data)] for i in range(count))]


def test_prompts_share_the_clip_transform_by_default_and_draw_their_own_on_request(ytvos_root):
    train = make_video_transforms("train", max_size=160)
    shared = geometric_sizes(dataset(ytvos_root, train), 12, seed=3)
    assert all(clip == prompt for clip, prompt in shared)
    independent = geometric_sizes(dataset(ytvos_root, train, independent=True), 12, seed=3)
    assert any(clip != prompt for clip, prompt in independent)


def test_flip_is_shared_with_the_prompts(ytvos_root):
    """A horizontal flip of the clip flips its prompts too: with flips only, the prompts are the unflipped
    prompts mirrored whenever the caption's clip was mirrored."""
    from rvos.datasets.transforms_video import Compose, RandomHorizontalFlip, ToNormalizedTensor

    plain = dataset(ytvos_root, Compose([ToNormalizedTensor()]))
    flipping = dataset(ytvos_root, Compose([RandomHorizontalFlip(p=1.0), ToNormalizedTensor()]))
    random.seed(1)
    clip, target = plain[0]
    random.seed(1)
    flipped_clip, flipped_target = flipping[0]
    assert torch.equal(flipped_clip, clip.flip(-1))
    assert torch.equal(flipped_target[PROMPT_FRAMES_KEY], target[PROMPT_FRAMES_KEY].flip(-1))


def test_registry_enables_prompts_for_tfvos_only_and_collate_pads_them(ytvos_root):
    args = opts.parse_args(["--config", str(REPO_ROOT / "configs" / "tiny" / "tfvos_tiny_synthetic.yaml"),
                            "--ytvos_path", str(ytvos_root), "--num_frames", "2", "--max_size", "160"])
    random.seed(0)
    batch = [build_dataset("train", args)[i] for i in range(2)]
    samples, targets = collate_fn(batch)
    prompts = torch.stack([t[PROMPT_FRAMES_KEY] for t in targets])
    masks = torch.stack([t[PROMPT_MASK_KEY] for t in targets])
    assert prompts.shape[:2] == samples.tensors.shape[:2] and prompts.shape[-1] % 32 == 0
    for (clip, _), prompt, mask in zip(batch, prompts, masks):
        h, w = clip.shape[-2:]
        assert not mask[:, :h, :w].any() and mask[:, h:].all() and mask[:, :, w:].all()
        assert (prompt[:, :, h:] == 0).all()
    args.model = "referformer"
    clip, target = build_dataset("train", args)[0]
    assert PROMPT_FRAMES_KEY not in target


def test_datasets_without_masks_in_every_frame_are_refused(tmp_path):
    root = make_dataset("a2d", tmp_path / "a2d", seed=0, num_videos=1, num_test_videos=1, num_frames=4, min_frames=4,
                        height=64, width=96)
    args = SimpleNamespace(model="tfvos", dataset_file="a2d", a2d_path=str(root), num_frames=2, max_size=96,
                           tfvos_independent_prompt_transform=False)
    with pytest.raises(ValueError, match="A2DSentencesDataset has none"):
        build_dataset("train", args)


@pytest.mark.parametrize("config", sorted((REPO_ROOT / "configs" / "tfvos").glob("*_*.yaml")), ids=lambda p: p.stem)
def test_recipes_carry_the_reference_world_size_and_schedule(config):
    """TF2's scripts/dist_train_test_ytvos.sh: 3 GPUs x 1 clip, 6 epochs, drops after 3 and 5, from ReferFormer."""
    args = opts.parse_args(["--config", str(config)])
    assert args.model == "tfvos" and args.with_box_refine and args.binary and args.freeze_text_encoder
    assert (args.reference_world_size, args.reference_batch_size, args.batch_size) == (3, 1, 1)
    assert (args.epochs, args.lr_drop, args.num_frames) == (6, [3, 5], 5)
    assert args.pretrained_weights and args.output_dir.startswith("output/")
    assert "No numbers" in args.recipe["notes"]
