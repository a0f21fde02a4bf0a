"""Optimiser, LR schedule and the global-batch check, exactly as ReferFormer's ``main.py``.

Parameter groups (only ``requires_grad`` parameters; a name *matches* a list when one of its strings is a
substring of the name), in this order:

0. names matching none of ``lr_backbone_names``, ``lr_text_encoder_names``, ``lr_linear_proj_names``: ``lr``;
1. names matching ``lr_backbone_names``: ``lr_backbone``;
2. names matching ``lr_text_encoder_names``: ``lr_text_encoder``;
3. names matching ``lr_linear_proj_names``: ``lr * lr_linear_proj_mult``.

AdamW(weight_decay) over them and MultiStepLR(``lr_drop``) stepped once per epoch. A model with a
``no_weight_decay()`` method (the names of parameters trained without weight decay, e.g. Mask2Former's norms and
embeddings) has each group split in two, the second (``<group>_no_decay``) with weight decay 0. ``--scale_lr`` multiplies
every learning rate by (world_size * batch_size * accumulate) / (reference_world_size * reference_batch_size).
"""
import logging
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import torch
from torch import nn

logger = logging.getLogger(__name__)

GROUP_NAMES = ("default", "backbone", "text_encoder", "linear_proj")


def match_name_keywords(name: str, keywords: Sequence[str]) -> bool:
    """The original rule: any keyword is a substring of the parameter name."""
    return any(keyword in name for keyword in keywords)


def build_param_groups(model: nn.Module, args, lr_scale: float = 1.0) -> List[Dict]:
    """The four original groups of ``model``'s trainable parameters; each dict has ``params``, ``lr``,
    ``name`` and ``param_names``. A parameter matching two of the lists is an error (the original would
    hand it to AdamW twice)."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    backbone = [match_name_keywords(n, args.lr_backbone_names) for n, _ in named]
    text = [match_name_keywords(n, args.lr_text_encoder_names) for n, _ in named]
    proj = [match_name_keywords(n, args.lr_linear_proj_names) for n, _ in named]
    for (name, _), flags in zip(named, zip(backbone, text, proj)):
        if sum(flags) > 1:
            raise ValueError(f"parameter {name} matches more than one of --lr_backbone_names "
                             f"{args.lr_backbone_names}, --lr_text_encoder_names {args.lr_text_encoder_names}, "
                             f"--lr_linear_proj_names {args.lr_linear_proj_names}")
    members = [
        [i for i in range(len(named)) if not (backbone[i] or text[i] or proj[i])],
        [i for i in range(len(named)) if backbone[i]],
        [i for i in range(len(named)) if text[i]],
        [i for i in range(len(named)) if proj[i]],
    ]
    lrs = [args.lr, args.lr_backbone, args.lr_text_encoder, args.lr * args.lr_linear_proj_mult]
    exempt = set(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else None
    groups = []
    for group, idx, lr in zip(GROUP_NAMES, members, lrs):
        parts = [(group, idx, {})] if exempt is None else [
            (group, [i for i in idx if named[i][0] not in exempt], {}),
            (f"{group}_no_decay", [i for i in idx if named[i][0] in exempt], {"weight_decay": 0.0})]
        groups += [{"params": [named[i][1] for i in part], "lr": lr * lr_scale, "name": name,
                    "param_names": [named[i][0] for i in part], **extra} for name, part, extra in parts]
    return groups


def build_optimizer(model: nn.Module, args, lr_scale: float = 1.0):
    """(AdamW, MultiStepLR) over :func:`build_param_groups`."""
    groups = build_param_groups(model, args, lr_scale)
    for group in groups:
        logger.info("param group %-12s lr %.3g: %d tensors, %d parameters", group["name"], group["lr"],
                    len(group["params"]), sum(p.numel() for p in group["params"]))
    optimizer = torch.optim.AdamW(groups, lr=args.lr * lr_scale, weight_decay=args.weight_decay)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, list(args.lr_drop))
    return optimizer, scheduler


@dataclass(frozen=True)
class GlobalBatch:
    """This run's global batch (world_size * batch_size * accumulate) against the recipe's reference."""

    world_size: int
    batch_size: int
    accumulate: int
    reference_world_size: Optional[int]
    reference_batch_size: Optional[int]

    @property
    def size(self) -> int:
        return self.world_size * self.batch_size * self.accumulate

    @property
    def reference(self) -> Optional[int]:
        if self.reference_world_size is None or self.reference_batch_size is None:
            return None
        return self.reference_world_size * self.reference_batch_size

    @property
    def matches(self) -> bool:
        return self.reference is None or self.reference == self.size

    def lr_scale(self) -> float:
        """The linear-scaling factor of ``--scale_lr`` (1 without a reference)."""
        return 1.0 if self.reference is None else self.size / self.reference

    def advice(self) -> str:
        """How to get back to the recipe's global batch."""
        per_step = self.world_size * self.batch_size
        lines = [f"the recipe was tuned for a global batch of {self.reference} "
                 f"({self.reference_world_size} GPUs x {self.reference_batch_size} clips), but this run has "
                 f"{self.world_size} processes x {self.batch_size} clips x accumulate {self.accumulate} = "
                 f"{self.size}."]
        if self.reference % per_step == 0:
            lines.append(f"To keep the recipe, pass --accumulate {self.reference // per_step} "
                         f"({self.world_size} x {self.batch_size} x {self.reference // per_step} = {self.reference}).")
        else:
            lines.append(f"No whole --accumulate value gives {self.reference} with {self.world_size} processes "
                         f"x {self.batch_size} clips; change --batch_size or the process count.")
        lines.append(f"Or pass --scale_lr to scale every learning rate linearly by {self.lr_scale():.4g}.")
        lines.append("Published numbers were obtained with the reference global batch; results may differ.")
        return "\n".join(lines)


def check_global_batch(args, world_size: int) -> float:
    """Log a loud warning when the global batch differs from the recipe's; returns the LR scale to apply
    (``--scale_lr``) or 1."""
    batch = GlobalBatch(world_size, args.batch_size, args.accumulate, args.reference_world_size,
                        args.reference_batch_size)
    if batch.reference is None:
        logger.info("global batch %d (no reference_world_size/reference_batch_size in the config)", batch.size)
        return 1.0
    if args.scale_lr:
        scale = batch.lr_scale()
        logger.warning("--scale_lr: global batch %d vs the recipe's %d, every learning rate is scaled by %.4g",
                       batch.size, batch.reference, scale)
        return scale
    if batch.matches:
        logger.info("global batch %d = the recipe's %d x %d", batch.size, batch.reference_world_size,
                    batch.reference_batch_size)
        return 1.0
    banner = "!" * 100
    logger.warning("\n%s\nGLOBAL BATCH DIFFERS FROM THE RECIPE: %s\n%s", banner, batch.advice(), banner)
    return 1.0
