"""Optimiser parameter groups and LRs (the original main.py rules), the recipe's global-batch warning and
``--scale_lr``, the numbered checkpoint epochs, and resuming a legacy (public-format) checkpoint."""
import argparse
import logging
from pathlib import Path

import pytest
import torch

from rvos.models import build_model
from rvos.models.checkpoint import read_checkpoint
from rvos.opts import parse_args
from train_support import REPO_ROOT, tiny_args, tiny_world
from rvos.util.misc import nested_tensor_from_videos_list
from rvos.util.optim import GROUP_NAMES, build_optimizer, build_param_groups, check_global_batch
from rvos.util.train_state import Position, checkpoint_milestone_epochs, restore_training_state


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return tiny_world(tmp_path_factory)


def tiny_model(world, *extra):
    args = parse_args(tiny_args(world, None, *extra))
    torch.manual_seed(0)
    model, _, _ = build_model(args)
    return args, model


def test_param_groups_follow_the_original_rules(world):
    args, model = tiny_model(world, "--lr_linear_proj_mult", "0.1")
    groups = build_param_groups(model, args)
    assert [g["name"] for g in groups] == list(GROUP_NAMES)
    assert [g["lr"] for g in groups] == pytest.approx([2e-4, 1e-4, 1e-4, 2e-5])
    default, backbone, text, proj = (g["param_names"] for g in groups)
    assert backbone and all("backbone.0" in n for n in backbone)
    assert text and all("text_encoder" in n for n in text)
    assert proj and all("reference_points" in n or "sampling_offsets" in n for n in proj)
    assert not any(k in n for n in default for k in ("backbone.0", "text_encoder", "reference_points",
                                                       "sampling_offsets"))
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert sorted(default + backbone + text + proj) == sorted(trainable)
    by_name = dict(model.named_parameters())
    for group in groups:
        assert all(p is by_name[n] for p, n in zip(group["params"], group["param_names"]))


def test_frozen_text_encoder_is_left_out_and_scale_lr_scales_every_group(world):
    args, model = tiny_model(world, "--freeze_text_encoder")
    optimizer, scheduler = build_optimizer(model, args, lr_scale=0.25)
    assert isinstance(optimizer, torch.optim.AdamW) and optimizer.defaults["weight_decay"] == args.weight_decay
    assert [len(g["params"]) for g in optimizer.param_groups][2] == 0
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([5e-5, 2.5e-5, 2.5e-5, 5e-5])
    assert sorted(scheduler.milestones.elements()) == [3]


def test_a_parameter_in_two_lists_is_an_error(world):
    args, model = tiny_model(world, "--lr_backbone_names", "backbone.0", "sampling_offsets")
    with pytest.raises(ValueError, match="more than one"):
        build_param_groups(model, args)


def options(**values):
    base = dict(batch_size=1, accumulate=1, reference_world_size=8, reference_batch_size=1, scale_lr=False)
    return argparse.Namespace(**{**base, **values})


def test_global_batch_warning_names_the_fix(caplog):
    with caplog.at_level(logging.INFO):
        assert check_global_batch(options(), world_size=2) == 1.0
    warning = "\n".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "GLOBAL BATCH DIFFERS" in warning and "--accumulate 4" in warning and "--scale_lr" in warning
    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert check_global_batch(options(accumulate=4), world_size=2) == 1.0
        assert check_global_batch(options(reference_world_size=None), world_size=3) == 1.0
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert check_global_batch(options(scale_lr=True, batch_size=2), world_size=2) == pytest.approx(0.5)


def test_numbered_checkpoints_before_each_drop_and_at_the_end():
    assert checkpoint_milestone_epochs([3, 5], 6) == [2, 4, 5]
    assert checkpoint_milestone_epochs([8, 10], 12) == [7, 9, 11]
    assert checkpoint_milestone_epochs([20], 6) == [5]


def test_legacy_checkpoint_resumes_like_the_original(world, tmp_path):
    """A public-format file (pickled Namespace 'args', no iteration/RNG): optimiser moments restored, training
    from epoch + 1, this run's LRs decayed at the scheduler's epoch."""
    args, model = tiny_model(world)
    optimizer, scheduler = build_optimizer(model, args)
    model(*_dummy_batch())["pred_logits"].sum().backward()
    optimizer.step()
    for _ in range(4):
        scheduler.step()
    path = tmp_path / "legacy.pth"
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "lr_scheduler": scheduler.state_dict(), "epoch": 3, "args": argparse.Namespace(lr=args.lr)}, path)

    new_args, new_model = tiny_model(world, "--lr", "1e-3")
    new_optimizer, new_scheduler = build_optimizer(new_model, new_args)
    position, rng = restore_training_state(read_checkpoint(path), str(path), new_optimizer, new_scheduler, None,
                                           None, 0, 1, new_args.lr_drop, new_args.batch_size)
    assert position == Position(4, 0) and rng is None
    assert new_optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 * 0.1)
    assert new_optimizer.param_groups[0]["initial_lr"] == pytest.approx(1e-3)
    first = optimizer.param_groups[0]["params"][0]
    assert torch.equal(new_optimizer.state[new_optimizer.param_groups[0]["params"][0]]["exp_avg"],
                       optimizer.state[first]["exp_avg"])


def _dummy_batch():
    clip = torch.rand(2, 3, 64, 64)
    return nested_tensor_from_videos_list([clip], 32), ["a red circle"], [{"size": torch.tensor([64, 64])}]


@pytest.mark.parametrize("config", sorted((REPO_ROOT / "configs" / "referformer").glob("*_*.yaml")),
                         ids=lambda p: p.stem)
def test_recipe_configs_carry_reference_batch_schedule_and_paper_numbers(config):
    args = parse_args(["--config", str(config)])
    assert args.model == "referformer" and args.with_box_refine
    assert args.reference_world_size == 8 and args.reference_batch_size == args.batch_size
    assert args.lr_drop and max(args.lr_drop) < args.epochs
    assert args.output_dir.startswith("output/") and not Path(args.output_dir).is_absolute()
    assert args.pretrained_weights or args.backbone_pretrained
    assert args.recipe.get("description")
    if "pretrain" not in config.stem or args.backbone in ("resnet50", "resnet101", "swin_t_p4w7", "swin_l_p4w7"):
        assert args.recipe.get("paper")
