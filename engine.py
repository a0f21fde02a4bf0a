"""Training and evaluation loops; nothing here knows a model or a dataset.

``train_one_epoch`` runs ``model(samples, captions, targets)`` and ``criterion(outputs, targets)`` (a dict of
loss terms weighted by ``criterion.weight_dict``) over batches ``(NestedTensor [B, T, 3, H, W], list of B target
dicts with 'caption')``, with gradient accumulation (DDP ``no_sync`` on the iterations that do not step), gradient
clipping, and mixed precision (``fp16`` with a GradScaler, ``bf16`` without). ``evaluate`` runs the model in
inference mode and collects what a caller-supplied function makes of the outputs, over all ranks.
"""
import contextlib
import logging
import math
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Optional

import torch
from torch import nn
from tqdm import tqdm

from rvos.util.dist import all_gather_object, is_main_process, reduce_dict
from rvos.util.logger import Meters, ScalarWriter, format_values

logger = logging.getLogger(__name__)

AMP_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class TrainOptions:
    """max_norm: gradient clipping (<= 0: none, the norm is still logged); amp: None, 'fp16' or 'bf16';
    accumulate: batches per optimiser step; print_freq: iterations between human log lines."""

    max_norm: float = 0.0
    amp: Optional[str] = None
    accumulate: int = 1
    print_freq: int = 20


def autocast(device: torch.device, amp: Optional[str]):
    """The autocast context of ``--amp`` (a no-op context without it)."""
    if amp is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=AMP_DTYPES[amp])


def to_float32(obj: Any) -> Any:
    """Floating tensors in nested dicts/lists/tuples cast to float32 (losses are computed outside autocast)."""
    if isinstance(obj, torch.Tensor):
        return obj.float() if obj.is_floating_point() else obj
    if isinstance(obj, dict):
        return {k: to_float32(v) for k, v in obj.items()}
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        return type(obj)(*(to_float32(v) for v in obj))
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_float32(v) for v in obj)
    return obj


def targets_to(targets: List[dict], device: torch.device) -> List[dict]:
    """Tensors of every target dict moved to ``device`` (strings and other fields kept)."""
    return [{k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in t.items()}
            for t in targets]


def _progress_bar(total: int, initial: int, desc: str) -> tqdm:
    interactive = sys.stderr.isatty()
    return tqdm(total=total, initial=initial, desc=desc, disable=not is_main_process(), dynamic_ncols=True,
                mininterval=0.5 if interactive else 30.0, leave=interactive)


def _grad_norm(parameters, max_norm: float) -> torch.Tensor:
    params = [p for p in parameters if p.grad is not None]
    if not params:
        return torch.zeros(())
    return torch.nn.utils.clip_grad_norm_(params, max_norm if max_norm > 0 else float("inf"))


def train_one_epoch(model: nn.Module, criterion: nn.Module, data_loader: Iterable, optimizer: torch.optim.Optimizer,
                    device: torch.device, epoch: int, options: TrainOptions, num_iterations: int,
                    start_iteration: int = 0, scaler: Optional[torch.amp.GradScaler] = None,
                    writer: Optional[ScalarWriter] = None,
                    after_iteration: Optional[Callable[[int, bool], bool]] = None,
                    meters: Optional[Meters] = None) -> Dict[str, float]:
    """Train on batches ``start_iteration .. num_iterations - 1`` of ``epoch`` (``data_loader`` yields exactly the
    remaining ones, or more: the extra are not drawn).

    The optimiser steps after every ``options.accumulate`` batches counted from the start of the epoch, and
    after the last batch; each batch's loss is divided by the size of its accumulation group, so a step sees
    the mean gradient of its group. ``after_iteration(done, stepped)`` is called after every batch with the
    number of batches of the epoch done and whether the optimiser stepped; when it returns True the epoch
    ends there. A non-finite loss stops training with FloatingPointError, except under fp16 where the
    GradScaler skips the step (logged).

    Returns the epoch averages over all ranks: ``loss``, each weighted loss term, each ``<term>_unscaled``,
    ``lr``, ``grad_norm`` and, with fp16, ``skipped_steps``. ``meters``: the running sums to add to (a resumed
    epoch's sums of its first ``start_iteration`` batches, so that the averages cover the whole epoch).
    """
    model.train()
    criterion.train()
    meters = Meters() if meters is None else meters
    weight_dict = criterion.weight_dict
    accumulate = max(1, options.accumulate)
    bar = _progress_bar(num_iterations, start_iteration, f"Epoch {epoch}")
    skipped = 0
    start_time = time.time()
    for iteration, (samples, targets) in zip(range(start_iteration, num_iterations), data_loader):
        group_start = iteration - iteration % accumulate
        group_size = min(accumulate, num_iterations - group_start)
        steps_now = iteration + 1 == group_start + group_size
        samples = samples.to(device, non_blocking=True)
        captions = [t["caption"] for t in targets]
        targets = targets_to(targets, device)

        sync = contextlib.nullcontext() if steps_now or not hasattr(model, "no_sync") else model.no_sync()
        with sync:
            with autocast(device, options.amp):
                outputs = model(samples, captions, targets)
            loss_dict = criterion(to_float32(outputs), targets)
            losses = sum(loss_dict[k] * weight_dict[k] for k in loss_dict if k in weight_dict)
            backward_loss = losses / group_size
            (scaler.scale(backward_loss) if scaler is not None else backward_loss).backward()

        reduced = reduce_dict(loss_dict)
        scaled = {k: v * weight_dict[k] for k, v in reduced.items() if k in weight_dict}
        loss_value = float(sum(scaled.values()))
        if not math.isfinite(loss_value) and scaler is None:
            raise FloatingPointError(f"loss is {loss_value} at epoch {epoch}, iteration {iteration}; stopping "
                                     f"(terms: {format_values({k: float(v) for k, v in reduced.items()}, reduced)})")

        grad_norm = None
        if steps_now:
            if scaler is not None:
                scaler.unscale_(optimizer)
            grad_norm = _grad_norm(model.parameters(), options.max_norm)
            if scaler is not None:
                scale_before = scaler.get_scale()
                scaler.step(optimizer)
                scaler.update()
                if scaler.get_scale() < scale_before:
                    skipped += 1
                    logger.warning("fp16: non-finite gradients at epoch %d, iteration %d; step skipped, loss scale "
                                   "%g -> %g", epoch, iteration, scale_before, scaler.get_scale())
            else:
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        lr = optimizer.param_groups[0]["lr"]
        values = {"loss": loss_value, **{k: float(v) for k, v in scaled.items()},
                  **{f"{k}_unscaled": float(v) for k, v in reduced.items()}, "lr": lr}
        if grad_norm is not None and math.isfinite(float(grad_norm)):
            values["grad_norm"] = float(grad_norm)
        meters.update(**values)
        bar.update(1)
        bar.set_postfix(loss=f"{meters.smoothed('loss'):.4f}", lr=f"{lr:.2e}", refresh=False)
        if writer is not None:
            writer.scalars({k: values[k] for k in ("loss", "lr", "grad_norm") if k in values},
                           step=epoch * num_iterations + iteration, prefix="train_iter/")
        done = iteration + 1
        if done % options.print_freq == 0 or done == num_iterations:
            elapsed = time.time() - start_time
            eta = elapsed / (done - start_iteration) * (num_iterations - done)
            logger.info("epoch %d [%d/%d] eta %s  loss %.4f (%.4f)  lr %.3g  grad_norm %.3g", epoch, done,
                        num_iterations, _hms(eta), loss_value, meters.smoothed("loss"), lr,
                        meters.smoothed("grad_norm"))
        if after_iteration is not None and after_iteration(done, steps_now):
            break
    bar.close()
    meters.synchronize()
    stats = meters.averages()
    if scaler is not None:
        stats["skipped_steps"] = skipped  # gradients are all-reduced, so every rank skips the same steps
    return stats


def _hms(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


@torch.no_grad()
def evaluate(model: nn.Module, data_loader: Iterable, device: torch.device,
             make_predictions: Callable[[dict, List[dict]], List[Any]], amp: Optional[str] = None,
             desc: str = "eval") -> List[Any]:
    """Run ``model`` (unwrapped: ranks may hold different numbers of batches) in eval mode over this rank's
    batches and return ``make_predictions(outputs, targets)`` of every batch of every rank, concatenated in
    rank order (on every rank)."""
    model.eval()
    predictions: List[Any] = []
    total = len(data_loader) if hasattr(data_loader, "__len__") else None
    for samples, targets in tqdm(data_loader, total=total, desc=desc, disable=not is_main_process(),
                                 dynamic_ncols=True, mininterval=0.5 if sys.stderr.isatty() else 30.0):
        samples = samples.to(device, non_blocking=True)
        captions = [t["caption"] for t in targets]
        targets = targets_to(targets, device)
        with autocast(device, amp):
            outputs = model(samples, captions, targets)
        predictions.extend(make_predictions(to_float32(outputs), targets))
    gathered = all_gather_object(predictions)
    return [p for part in gathered for p in part]
