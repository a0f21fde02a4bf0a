"""Video-level Hungarian matching: one referred object per clip, matched to one query slot.

Costs are per query, averaged over frames (class cost over the valid frames only), exactly as
the ReferFormer matcher; the assignment uses scipy's Hungarian solver.
"""
from typing import List, Tuple

import torch
from scipy.optimize import linear_sum_assignment
from torch import nn

from rvos.util.box_ops import box_cxcywh_to_xyxy, generalized_box_iou

from .losses import downsample_target_masks, pairwise_dice_coef, pairwise_focal_cost


def focal_class_cost(prob: torch.Tensor, class_ids: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0):
    """Focal classification cost of probabilities [Q, K] for classes ``class_ids`` [M] -> [Q, M]."""
    neg = (1 - alpha) * (prob ** gamma) * (-(1 - prob + 1e-8).log())
    pos = alpha * ((1 - prob) ** gamma) * (-(prob + 1e-8).log())
    return pos[:, class_ids] - neg[:, class_ids]


class HungarianMatcher(nn.Module):
    """Match every clip's target to a query slot.

    ``outputs``: pred_logits [B, T, Q, K], pred_boxes [B, T, Q, 4], pred_masks [B, T, Q, h, w];
    ``targets``: per clip ``labels`` [T], ``boxes`` [T, 4] (cxcywh, normalised), ``masks`` [T, H, W],
    ``valid`` [T]. Returns per clip (query indices, target indices), each of length 1.
    """

    def __init__(self, cost_class: float = 1, cost_bbox: float = 1, cost_giou: float = 1, cost_mask: float = 1,
                 cost_dice: float = 1, num_classes: int = 1, mask_out_stride: int = 4, focal_alpha: float = 0.25):
        super().__init__()
        if not any((cost_class, cost_bbox, cost_giou, cost_mask, cost_dice)):
            raise ValueError("all matching costs are 0")
        self.cost_class = cost_class
        self.cost_bbox = cost_bbox
        self.cost_giou = cost_giou
        self.cost_mask = cost_mask
        self.cost_dice = cost_dice
        self.num_classes = num_classes
        self.mask_out_stride = mask_out_stride
        self.focal_alpha = focal_alpha

    def cost_matrix(self, logits, boxes, masks, target: dict, target_masks: torch.Tensor) -> torch.Tensor:
        """Cost [Q, 1] of one clip: logits [T, Q, K], boxes [T, Q, 4], masks [T, Q, h, w]."""
        nf = logits.shape[0]
        prob = logits.sigmoid()
        class_costs = []
        for t in range(nf):
            if target["valid"][t] == 0:
                continue
            class_ids = torch.zeros(1, dtype=torch.long, device=logits.device) if self.num_classes == 1 \
                else target["labels"][t].reshape(1)
            class_costs.append(focal_class_cost(prob[t], class_ids, self.focal_alpha))
        cost_class = torch.stack(class_costs).mean(0) if class_costs else prob.new_zeros((prob.shape[1], 1))

        tgt_boxes = target["boxes"]
        cost_bbox = torch.stack([torch.cdist(boxes[t], tgt_boxes[t:t + 1], p=1) for t in range(nf)]).mean(0)
        cost_giou = torch.stack([-generalized_box_iou(box_cxcywh_to_xyxy(boxes[t]), box_cxcywh_to_xyxy(tgt_boxes[t:t + 1]))
                                 for t in range(nf)]).mean(0)
        pred_masks = masks.transpose(0, 1)
        cost_mask = pairwise_focal_cost(pred_masks, target_masks.unsqueeze(0), self.focal_alpha)
        cost_dice = -pairwise_dice_coef(pred_masks, target_masks.unsqueeze(0))
        return (self.cost_class * cost_class + self.cost_bbox * cost_bbox + self.cost_giou * cost_giou
                + self.cost_mask * cost_mask + self.cost_dice * cost_dice)

    @torch.no_grad()
    def forward(self, outputs: dict, targets: List[dict]) -> List[Tuple[torch.Tensor, torch.Tensor]]:
        target_masks = downsample_target_masks([t["masks"] for t in targets], self.mask_out_stride)
        target_masks = target_masks.to(outputs["pred_masks"])
        indices = []
        for i, target in enumerate(targets):
            cost = self.cost_matrix(outputs["pred_logits"][i], outputs["pred_boxes"][i], outputs["pred_masks"][i],
                                    target, target_masks[i])
            rows, cols = linear_sum_assignment(cost.cpu().numpy())
            indices.append((torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64)))
        return indices


def build_matcher(args, num_classes: int, mask_out_stride: int = 4) -> HungarianMatcher:
    """The matcher with the ``--set_cost_*`` weights; masks are compared at ``mask_out_stride`` (SgMg: 2)."""
    return HungarianMatcher(cost_class=args.set_cost_class, cost_bbox=args.set_cost_bbox,
                            cost_giou=args.set_cost_giou, cost_mask=args.set_cost_mask, cost_dice=args.set_cost_dice,
                            num_classes=num_classes, mask_out_stride=mask_out_stride)
