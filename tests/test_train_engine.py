"""The training loop on the tiny model: gradient accumulation equals the larger batch, and mixed precision
(bf16 autocast; fp16 with a GradScaler) trains on a CPU."""
import copy

import pytest
import torch
from torch import nn

from rvos.datasets.collate import collate_fn
from rvos.datasets.registry import build_dataset
from rvos.engine import TrainOptions, train_one_epoch
from rvos.models import build_model
from rvos.opts import parse_args
from train_support import tiny_args, tiny_world
from rvos.util.rng import SeededDataset
from rvos.util.train_state import scaler_for

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(options, model without dropout, criterion, two samples of the same size and number of valid frames)."""
    args = parse_args(tiny_args(tiny_world(tmp_path_factory), None, "--clip_max_norm", "0"))
    torch.manual_seed(0)
    model, criterion, _ = build_model(args)
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
        if isinstance(module, nn.MultiheadAttention):
            module.dropout = 0.0
    dataset = SeededDataset(build_dataset("train", args))
    by_shape = {}
    for index in range(len(dataset)):
        clip, target = dataset[(index, 100 + index)]
        key = (tuple(clip.shape), int(target["valid"].sum()))
        if key in by_shape:
            return args, model, criterion, [by_shape[key], (clip, target)]
        by_shape[key] = (clip, target)
    pytest.fail("no two samples of the same size in the synthetic world")


def trained_delta(model, criterion, batches, accumulate: int = 1, amp=None, scaler=None):
    """Parameter change after one epoch over ``batches`` with SGD(lr=1), i.e. minus the applied gradient."""
    model = copy.deepcopy(model)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1.0)
    stats = train_one_epoch(model, criterion, batches, optimizer, CPU, 0, TrainOptions(accumulate=accumulate, amp=amp),
                            num_iterations=len(batches), scaler=scaler)
    return {n: p.detach() - before[n] for n, p in model.named_parameters()}, stats


def changed(delta) -> bool:
    return any(bool(d.abs().sum() > 0) for d in delta.values())


def test_accumulate_two_batches_of_one_equals_one_batch_of_two(tiny):
    _, model, criterion, samples = tiny
    accumulated, stats = trained_delta(model, criterion, [collate_fn(samples[:1]), collate_fn(samples[1:])], 2)
    batched, _ = trained_delta(model, criterion, [collate_fn(samples)], 1)
    assert stats["lr"] == 1.0 and "grad_norm" in stats
    norm = torch.sqrt(sum((d.double() ** 2).sum() for d in batched.values()))
    error = torch.sqrt(sum(((accumulated[n] - batched[n]).double() ** 2).sum() for n in batched))
    assert norm > 0
    assert error / norm < 1e-4, f"relative gradient difference {float(error / norm):.3g}"


def test_bf16_training_step_on_cpu(tiny):
    _, model, criterion, samples = tiny
    delta, stats = trained_delta(model, criterion, [collate_fn(samples[:1])], amp="bf16")
    assert torch.isfinite(torch.tensor(stats["loss"])) and changed(delta)
    assert "skipped_steps" not in stats


def test_fp16_grad_scaler_skips_overflowing_steps_and_applies_the_others(tiny):
    _, model, criterion, samples = tiny
    batch = [collate_fn(samples[:1])]
    scaler = scaler_for("fp16", CPU)
    delta, stats = trained_delta(model, criterion, batch, amp="fp16", scaler=scaler)
    assert stats["skipped_steps"] in (0, 1)
    assert changed(delta) == (stats["skipped_steps"] == 0)
    if stats["skipped_steps"]:
        assert scaler.get_scale() < 65536.0
    small = torch.amp.GradScaler("cpu", init_scale=1.0)
    delta, stats = trained_delta(model, criterion, batch, amp="fp16", scaler=small)
    assert stats["skipped_steps"] == 0 and changed(delta)
    assert torch.isfinite(torch.tensor(stats["loss"]))
