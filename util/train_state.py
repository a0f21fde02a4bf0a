"""What a training checkpoint holds, and how ``--resume`` continues from it.

A checkpoint written by ``main.py`` (with ``models.checkpoint.atomic_save``) is a dict of plain types and tensors,
loadable with ``torch.load(weights_only=True)``::

    model          state dict of the unwrapped model
    optimizer      AdamW state (param groups carry 'name' and 'param_names')
    lr_scheduler   MultiStepLR state
    scaler         GradScaler state (--amp fp16) or None
    epoch          the epoch this state belongs to (the last epoch trained, as the original)
    iteration      iterations of ``epoch`` done (all of them when ``epoch_finished``)
    epoch_finished True at the end of an epoch (the scheduler has stepped), False mid-epoch
    sampler        ResumableDistributedSampler state (epoch, samples consumed, seed, dataset size)
    rng            one util.rng.capture_rng_state() per rank, in rank order
    meters         mid-epoch only: each rank's util.logger.Meters running sums, so the epoch's logged averages
                   cover the iterations before a resume too
    world_size     the number of processes that wrote it
    config         opts.args_to_config(args) (a plain dict, no pickled Namespace)
    versions       util.env_info.versions();  git_sha  util.env_info.git_sha()

``--resume`` of such a file continues exactly: same parameters, optimiser moments, LR, GradScaler scale, RNG
streams and the remaining samples of the epoch in the same order. A public ReferFormer-family checkpoint (no
'iteration'/'rng') is resumed as the original ``main.py`` did: optimiser and scheduler state, the learning rates of
this run's options applied at the scheduler's epoch, and training from ``epoch + 1``.
"""
import bisect
import logging
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import torch

from rvos.util.env_info import git_sha, versions

logger = logging.getLogger(__name__)

LEGACY_SCALER_KEY = "grad_scaler"  # SgMg


class ResumeError(RuntimeError):
    """A checkpoint's training state does not fit this run (with what to do instead)."""


@dataclass(frozen=True)
class Position:
    """Where training (re)starts: ``iteration`` batches of ``epoch`` are already done."""

    epoch: int
    iteration: int = 0


def is_exact_checkpoint(ckpt: Dict[str, Any]) -> bool:
    """Whether ``ckpt`` was written by this trainer (exact resume) rather than a public/legacy script."""
    return "iteration" in ckpt and "rng" in ckpt


def build_checkpoint(model, optimizer, lr_scheduler, scaler, sampler, epoch: int, iteration: int,
                     epoch_finished: bool, rng_states: List[Dict[str, Any]], config: Dict[str, Any],
                     meters: Optional[List[Dict[str, Any]]] = None) -> Dict[str, Any]:
    """The checkpoint dict described in the module docstring (``model`` is the unwrapped model)."""
    extra = {"meters": meters} if meters is not None and not epoch_finished else {}
    return {**extra,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "lr_scheduler": lr_scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "epoch": epoch,
        "iteration": iteration,
        "epoch_finished": epoch_finished,
        "sampler": sampler.state_dict(),
        "rng": rng_states,
        "world_size": len(rng_states),
        "config": config,
        "versions": versions(),
        "git_sha": git_sha(),
    }


def _load_optimizer(optimizer, state: Dict[str, Any], source: str) -> None:
    try:
        optimizer.load_state_dict(state)
    except (ValueError, KeyError) as err:
        raise ResumeError(
            f"the optimizer state in {source} does not fit this run's trainable parameters ({err}). Options that "
            "change them (--freeze_text_encoder, --lr_backbone <= 0, --lr_*_names, the backbone) must match the run "
            f"that wrote it. To start a new schedule from its weights, pass --pretrained_weights {source} instead "
            "of --resume.") from err


def _apply_legacy_schedule(optimizer, lr_scheduler, initial_lrs: List[float]) -> None:
    """The original resume: this run's LRs as ``initial_lr``, decayed in closed form at the loaded epoch."""
    milestones = sorted(lr_scheduler.milestones.elements())
    drops = bisect.bisect_right(milestones, lr_scheduler.last_epoch)
    lr_scheduler.base_lrs = list(initial_lrs)
    for group, initial in zip(optimizer.param_groups, initial_lrs):
        group["initial_lr"] = initial
        group["lr"] = initial * lr_scheduler.gamma ** drops
    lr_scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]


def restore_training_state(ckpt: Dict[str, Any], source: str, optimizer, lr_scheduler, scaler, sampler,
                           rank: int, world_size: int, lr_drop: List[int], batch_size: int) -> tuple:
    """Load optimiser, scheduler, scaler and sampler state from ``ckpt``.

    Returns (Position to start from, this rank's RNG state to restore just before training or None). A mid-epoch
    position is counted in this run's global batches (``world_size`` x ``batch_size``): a run with another batch
    size or world size continues with every remaining sample of the epoch (see ``_position_in_this_run``).
    """
    for key in ("optimizer", "lr_scheduler", "epoch"):
        if key not in ckpt:
            raise ResumeError(f"{source} holds no '{key}': it is a weights-only file; pass it as "
                              f"--pretrained_weights to fine-tune from it")
    if not is_exact_checkpoint(ckpt):
        initial_lrs = [group["lr"] for group in optimizer.param_groups]
        _load_optimizer(optimizer, ckpt["optimizer"], source)
        lr_scheduler.load_state_dict(ckpt["lr_scheduler"])
        _apply_legacy_schedule(optimizer, lr_scheduler, initial_lrs)
        scaler_state = ckpt.get(LEGACY_SCALER_KEY)
        if scaler is not None and scaler_state:
            scaler.load_state_dict(scaler_state)
        logger.warning("%s is a legacy checkpoint (no iteration/RNG state): resumed as the original main.py, "
                       "from epoch %d with this run's learning rates; the data order and RNG streams start afresh",
                       source, ckpt["epoch"] + 1)
        return Position(int(ckpt["epoch"]) + 1), None

    _load_optimizer(optimizer, ckpt["optimizer"], source)
    lr_scheduler.load_state_dict(ckpt["lr_scheduler"])
    saved_milestones = sorted(lr_scheduler.milestones.elements())
    if saved_milestones != sorted(lr_drop):
        logger.warning("%s continues its own LR schedule (milestones %s); --lr_drop %s is ignored on resume",
                       source, saved_milestones, list(lr_drop))
    if scaler is not None and ckpt.get("scaler"):
        scaler.load_state_dict(ckpt["scaler"])
    elif scaler is not None:
        logger.warning("%s has no GradScaler state (it was trained without --amp fp16); the scaler starts afresh",
                       source)
    if ckpt["epoch_finished"]:
        position = Position(int(ckpt["epoch"]) + 1)
    else:
        position = Position(int(ckpt["epoch"]), int(ckpt["iteration"]))
        try:
            sampler.load_state_dict(ckpt["sampler"])
        except ValueError as err:
            raise ResumeError(f"{source} stopped in the middle of epoch {position.epoch} but the training data "
                              f"changed since ({err}); the rest of that epoch cannot be reproduced") from err
        position = _position_in_this_run(position, sampler.consumed, world_size * batch_size, source)
    saved_world = len(ckpt["rng"])
    if saved_world != world_size:
        logger.warning("%s was written by %d processes and this run has %d: parameters and optimiser state "
                       "continue exactly, but the data split over ranks and the RNG streams differ",
                       source, saved_world, world_size)
    rng = ckpt["rng"][rank] if rank < saved_world else None
    logger.info("resuming %s at epoch %d, iteration %d", source, position.epoch, position.iteration)
    return position, rng


def _position_in_this_run(saved: Position, consumed: int, global_batch: int, source: str) -> Position:
    """The saved mid-epoch position in this run's global batches. The sampler resumes from the samples consumed;
    counting the saved iterations as this run's would end the epoch early when the global batch grew (the samples
    in between were skipped without a word)."""
    iteration = consumed // global_batch
    if iteration * global_batch != consumed or iteration != saved.iteration:
        logger.warning("%s stopped after %d samples of epoch %d (its iteration %d); with this run's global batch "
                       "of %d the epoch continues from iteration %d with every remaining sample: the data is the "
                       "same, the iteration numbers and optimiser steps differ from an uninterrupted run", source,
                       consumed, saved.epoch, saved.iteration, global_batch, iteration)
    return Position(saved.epoch, iteration)


def resumed_meter_states(ckpt: Dict[str, Any], rank: int) -> List[Dict[str, Any]]:
    """The running sums of a mid-epoch checkpoint this rank adds to its meters: all of them on rank 0 (the epoch
    averages sum over ranks, so this holds for any number of processes), none elsewhere."""
    if rank != 0 or ckpt.get("epoch_finished", True):
        return []
    return list(ckpt.get("meters") or [])


def lr_of_groups(optimizer) -> Dict[str, float]:
    """Current learning rate per named param group (for logs)."""
    return {group.get("name", str(i)): group["lr"] for i, group in enumerate(optimizer.param_groups)}


def checkpoint_milestone_epochs(lr_drop: List[int], epochs: int) -> List[int]:
    """Epochs after which a numbered ``checkpoint{epoch:04d}.pth`` is kept: the last epoch before each LR drop
    and the final epoch."""
    return sorted({m - 1 for m in lr_drop if 0 < m <= epochs} | {epochs - 1})


def scaler_for(amp: Optional[str], device: torch.device):
    """A GradScaler for ``--amp fp16``, None otherwise (bf16 and fp32 need none)."""
    if amp != "fp16":
        return None
    return torch.amp.GradScaler(device.type)
