"""SgMg's losses: ReferFormer's class and box losses on the indices the model matched in its forward,
focal + dice on the refined stride-1 mask and on the stride-2 patch mask (``loss_mask_low``,
``loss_dice_low``, weighted like ``loss_mask`` / ``loss_dice``)."""
from typing import Dict

from ..criterion import SetCriterion, build_weight_dict

LOW_MASK_STRIDE = 2
MASK_LOSSES = ("loss_mask", "loss_dice")


def sgmg_weight_dict(args) -> Dict[str, float]:
    """ReferFormer's weights plus ``loss_mask_low`` / ``loss_dice_low`` (and their ``_i`` auxiliary copies)
    with the ``--mask_loss_coef`` / ``--dice_loss_coef`` weights."""
    weights = build_weight_dict(args)
    low = {}
    for key, weight in weights.items():
        for name in MASK_LOSSES:
            if key == name or key.startswith(name + "_"):
                low[name + "_low" + key[len(name):]] = weight
    weights.update(low)
    return weights


class SgMgCriterion(SetCriterion):
    """``SetCriterion`` for SgMg outputs: every layer's dict carries ``matched_indices`` (the matcher ran in the
    model's forward; the criterion never calls it), ``pred_masks`` [B, T, H, W] (stride 1) and
    ``pred_masks_low`` [B, T, H/2, W/2] of the matched query only."""

    def __init__(self, num_classes: int, matcher, weight_dict: Dict[str, float], focal_alpha: float = 0.25):
        super().__init__(num_classes, matcher, weight_dict, focal_alpha=focal_alpha, mask_out_stride=1)
        self.low_mask_stride = LOW_MASK_STRIDE

    def match(self, outputs, targets):
        if "matched_indices" not in outputs:
            raise KeyError("SgMg outputs carry the matcher indices computed in the model's forward "
                           "('matched_indices'); run the model in training mode with the targets")
        return outputs["matched_indices"]

    def loss_masks(self, outputs, targets, indices, num_boxes):
        losses = {}
        for suffix, key, stride in (("", "pred_masks", self.mask_out_stride),
                                    ("_low", "pred_masks_low", self.low_mask_stride)):
            focal, dice = self.mask_losses(outputs[key], targets, stride, num_boxes)
            losses["loss_mask" + suffix] = focal
            losses["loss_dice" + suffix] = dice
        return losses
