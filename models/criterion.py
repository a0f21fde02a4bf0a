"""Set criterion: focal class, L1 + GIoU box, focal + dice mask losses, with auxiliary layers."""
from typing import Dict, List, Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from rvos.util import box_ops
from rvos.util.dist import all_reduce_mean_count

from .losses import dice_loss, downsample_target_masks, sigmoid_focal_loss


def _src_permutation(indices):
    batch = torch.cat([torch.full_like(src, i) for i, (src, _) in enumerate(indices)])
    return batch, torch.cat([src for src, _ in indices])


class SetCriterion(nn.Module):
    """Losses of ReferFormer for matched (query, target) pairs.

    ``num_boxes`` (the normaliser) is the number of valid frames in the batch, averaged over
    ranks and clamped to >= 1. ``last_indices`` keeps the matcher results of the last call
    (final layer first, then each auxiliary layer) for inspection.
    """

    def __init__(self, num_classes: int, matcher: nn.Module, weight_dict: Dict[str, float],
                 losses: Sequence[str] = ("labels", "boxes", "masks"), focal_alpha: float = 0.25,
                 mask_out_stride: int = 4):
        super().__init__()
        self.num_classes = num_classes
        self.matcher = matcher
        self.weight_dict = weight_dict
        self.losses = list(losses)
        self.focal_alpha = focal_alpha
        self.mask_out_stride = mask_out_stride
        self.last_indices: List = []

    def loss_labels(self, outputs, targets, indices, num_boxes):
        logits = outputs["pred_logits"]
        _, nf, nq = logits.shape[:3]
        logits = rearrange(logits, "b t q k -> b (t q) k")
        positives = []
        for target, (query, _) in zip(targets, indices):
            frames = target["valid"].nonzero().flatten().to(query.device)
            positives.append((frames * nq + query, frames))
        batch_idx, flat_idx = _src_permutation(positives)
        onehot = torch.zeros_like(logits)
        if self.num_classes == 1:
            onehot[batch_idx, flat_idx, 0] = 1
        else:
            labels = torch.cat([t["labels"][frames] for t, (_, frames) in zip(targets, positives)])
            onehot[batch_idx, flat_idx, labels] = 1
        loss = sigmoid_focal_loss(logits, onehot, num_boxes, alpha=self.focal_alpha) * logits.shape[1]
        return {"loss_ce": loss}

    def loss_boxes(self, outputs, targets, indices, num_boxes):
        idx = _src_permutation(indices)
        src = outputs["pred_boxes"].transpose(1, 2)[idx].flatten(0, 1)
        tgt = torch.cat([t["boxes"] for t in targets], dim=0)
        loss_bbox = F.l1_loss(src, tgt, reduction="none").sum() / num_boxes
        giou = box_ops.generalized_box_iou(box_ops.box_cxcywh_to_xyxy(src), box_ops.box_cxcywh_to_xyxy(tgt))
        loss_giou = (1 - torch.diag(giou)).sum() / num_boxes
        return {"loss_bbox": loss_bbox, "loss_giou": loss_giou}

    def loss_masks(self, outputs, targets, indices, num_boxes):
        src = outputs["pred_masks"].transpose(1, 2)[_src_permutation(indices)]
        focal, dice = self.mask_losses(src, targets, self.mask_out_stride, num_boxes)
        return {"loss_mask": focal, "loss_dice": dice}

    def mask_losses(self, src: torch.Tensor, targets, stride: int, num_boxes):
        """Focal and dice losses of the matched queries' mask logits ``src`` [B, T, h, w] against the target
        masks sampled at ``stride`` (h = H_pad / stride)."""
        tgt = downsample_target_masks([t["masks"] for t in targets], stride).to(src).flatten(1)
        src = src.flatten(1)
        return sigmoid_focal_loss(src, tgt, num_boxes, alpha=self.focal_alpha), dice_loss(src, tgt, num_boxes)

    def num_boxes(self, targets, device) -> float:
        count = torch.stack([t["valid"] for t in targets]).sum().to(device=device, dtype=torch.float)
        return max(all_reduce_mean_count(count), 1.0)

    def match(self, outputs, targets):
        """Per clip (query indices, target indices) of one layer's outputs."""
        return self.matcher(outputs, targets)

    def layer_losses(self, outputs, targets, num_boxes, suffix: str = "") -> Dict[str, torch.Tensor]:
        indices = self.match(outputs, targets)
        self.last_indices.append(indices)
        loss_fns = {"labels": self.loss_labels, "boxes": self.loss_boxes, "masks": self.loss_masks}
        losses = {}
        for name in self.losses:
            for key, value in loss_fns[name](outputs, targets, indices, num_boxes).items():
                losses[key + suffix] = value
        return losses

    def forward(self, outputs: dict, targets: List[dict]) -> Dict[str, torch.Tensor]:
        self.last_indices = []
        num_boxes = self.num_boxes(targets, outputs["pred_logits"].device)
        final = {k: v for k, v in outputs.items() if k != "aux_outputs"}
        losses = self.layer_losses(final, targets, num_boxes)
        for i, aux in enumerate(outputs.get("aux_outputs", [])):
            losses.update(self.layer_losses(aux, targets, num_boxes, suffix=f"_{i}"))
        return losses


def build_weight_dict(args) -> Dict[str, float]:
    """Loss weights, repeated with suffix ``_i`` for each auxiliary decoder layer."""
    base = {"loss_ce": args.cls_loss_coef, "loss_bbox": args.bbox_loss_coef, "loss_giou": args.giou_loss_coef,
            "loss_mask": args.mask_loss_coef, "loss_dice": args.dice_loss_coef}
    weights = dict(base)
    if args.aux_loss:
        for i in range(args.dec_layers - 1):
            weights.update({f"{k}_{i}": v for k, v in base.items()})
    return weights
