"""The training criterion of DsHmp as the shared training loop calls it: ``criterion(outputs, targets)`` -> raw loss
terms, weighted by ``criterion.weight_dict`` (the contrastive weight ramps up with ``set_step``).

Targets (per clip of T frames, from the MeViS dataset in DsHmp mode): ``instance_masks`` [K, T, H, W] bool (one
per referred object, empty where it is absent), ``instance_ids`` [K], ``refer_id`` (the expression's index among
the training expressions), ``positives`` / ``negatives`` (expression indices: same video and objects / the same
video's other expressions) and ``num_expressions``.
"""
from typing import Dict, List, Tuple

import torch
from torch import nn

from .model import DsHmp


def prepare_targets(targets: List[dict], padded_size: Tuple[int, int]) -> Tuple[List[dict], List[dict]]:
    """The original ``prepare_targets``: (frame targets, B*T video-major, and clip targets, B).

    Masks are zero-padded to ``padded_size``; an object absent from a frame has id -1 there; objects absent from
    every frame are dropped; ids are shifted by the smallest valid id. Frame targets hold the objects visible in
    that frame.
    """
    frames, clips = [], []
    for target in targets:
        masks = target["instance_masks"]
        k, t, h, w = masks.shape
        padded = masks.new_zeros((k, t, *padded_size), dtype=torch.float32)
        padded[:, :, :h, :w] = masks
        ids = target["instance_ids"].to(masks.device).view(k, 1).repeat(1, t)
        ids[padded.sum(dim=(2, 3)) == 0] = -1
        present = (ids != -1).any(dim=1)
        ids, padded = ids[present], padded[present]
        visible = ids != -1
        if len(ids):
            ids[visible] -= max(int(ids[visible].min()), 0)
        labels = torch.zeros(len(ids), dtype=torch.int64, device=masks.device)
        clips.append({"labels": labels, "ids": ids, "masks": padded, "refer_id": target["refer_id"],
                      "positives": [int(i) for i in target["positives"]],
                      "negatives": [int(i) for i in target["negatives"]],
                      "num_expressions": int(target["num_expressions"])})
        for f in range(t):
            keep = visible[:, f]
            frames.append({"labels": labels[keep], "ids": ids[keep, f], "masks": padded[keep, f]})
    return frames, clips


def loss_weights(base: Dict[str, float], aux_layers: int) -> Dict[str, float]:
    """``base`` plus ``<name>_<i>`` for each auxiliary output i."""
    weights = dict(base)
    for i in range(aux_layers):
        weights.update({f"{k}_{i}": v for k, v in base.items()})
    return weights


class DsHmpCriterion(nn.Module):
    """Frame-level and video-level losses of a ``DsHmp`` model (its ``criterion`` / ``vita_criterion``, which stay
    in the model's state dict as in the released checkpoint)."""

    def __init__(self, model: DsHmp, args):
        super().__init__()
        self.model = [model]  # not a submodule: the losses' buffers belong to the model's state dict
        frame = {"loss_ce": args.cls_loss_coef, "loss_mask": args.mask_loss_coef, "loss_dice": args.dice_loss_coef}
        video = {"loss_vita_ce": args.cls_loss_coef, "loss_vita_mask": args.mask_loss_coef,
                 "loss_vita_dice": args.dice_loss_coef}
        self.weight_dict = {**loss_weights(frame, args.dec_layers),
                            **loss_weights(video, args.dshmp_video_dec_layers - 1),
                            "loss_vita_sim": args.dshmp_sim_weight, "loss_con_sim": args.dshmp_contrastive_weight}
        self.contrastive_weight = args.dshmp_contrastive_weight
        self.contrastive_warmup = args.dshmp_contrastive_warmup
        self.set_step(0)

    def set_step(self, step: int) -> None:
        """The contrastive weight at optimiser step ``step``: rising linearly from 0 over ``contrastive_warmup``
        steps (the original's ``0.3 * iterations / 2000``), then constant."""
        ramp = 1.0 if self.contrastive_warmup <= 0 else min(step, self.contrastive_warmup) / self.contrastive_warmup
        self.weight_dict["loss_con_sim"] = self.contrastive_weight * ramp

    def forward(self, outputs: Dict, targets: List[dict]) -> Dict[str, torch.Tensor]:
        model = self.model[0]
        size = tuple(4 * s for s in outputs["frame"]["pred_masks"].shape[-2:])
        frames, clips = prepare_targets(targets, size)
        losses, frame_indices = model.criterion(outputs["frame"], frames)
        losses.update(model.vita_criterion(outputs["video"], clips, frames, frame_indices))
        return losses
