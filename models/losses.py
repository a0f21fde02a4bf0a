"""Mask/box losses and matching costs of the family, normalised as the original code does."""
import torch
import torch.nn.functional as F
from torchvision.ops import sigmoid_focal_loss as _focal


def sigmoid_focal_loss(inputs: torch.Tensor, targets: torch.Tensor, num_boxes: float,
                       alpha: float = 0.25, gamma: float = 2.0) -> torch.Tensor:
    """Focal loss [N, M] logits vs targets, mean over M, summed over N, divided by ``num_boxes``."""
    return _focal(inputs, targets, alpha=alpha, gamma=gamma, reduction="none").mean(1).sum() / num_boxes


def dice_loss(inputs: torch.Tensor, targets: torch.Tensor, num_boxes: float) -> torch.Tensor:
    """1 - (2|X∩Y| + 1) / (|X| + |Y| + 1) of sigmoid(inputs) [N, M] vs targets [N, M], summed / num_boxes."""
    inputs = inputs.sigmoid().flatten(1)
    numerator = 2 * (inputs * targets).sum(1)
    denominator = inputs.sum(-1) + targets.sum(-1)
    return (1 - (numerator + 1) / (denominator + 1)).sum() / num_boxes


def sigmoid_ce_loss(inputs: torch.Tensor, targets: torch.Tensor, num_masks: float) -> torch.Tensor:
    """Binary cross-entropy of logits [N, M] vs targets [N, M], mean over M, summed over N, divided by ``num_masks``
    (Mask2Former's point-sampled mask loss)."""
    return F.binary_cross_entropy_with_logits(inputs, targets, reduction="none").mean(1).sum() / num_masks


def pairwise_sigmoid_ce(inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy of every prediction [N, D] (logits) against every target [M, D] -> [N, M]."""
    positive = F.binary_cross_entropy_with_logits(inputs, torch.ones_like(inputs), reduction="none")
    negative = F.binary_cross_entropy_with_logits(inputs, torch.zeros_like(inputs), reduction="none")
    cost = torch.einsum("nc,mc->nm", positive, targets) + torch.einsum("nc,mc->nm", negative, 1 - targets)
    return cost / inputs.shape[1]


def pairwise_focal_cost(inputs: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25,
                        gamma: float = 2.0) -> torch.Tensor:
    """Mean focal loss of every prediction [N, D] against every target [M, D] -> [N, M]."""
    n, m = len(inputs), len(targets)
    inputs = inputs.flatten(1).unsqueeze(1).expand(-1, m, -1)
    targets = targets.flatten(1).unsqueeze(0).expand(n, -1, -1)
    return _focal(inputs, targets, alpha=alpha, gamma=gamma, reduction="none").mean(2)


def pairwise_dice_coef(inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Dice coefficient (not loss) of every sigmoid(prediction) [N, D] with every target [M, D] -> [N, M]."""
    inputs = inputs.sigmoid().flatten(1).unsqueeze(1)
    targets = targets.flatten(1).unsqueeze(0)
    numerator = 2 * (inputs * targets).sum(2)
    denominator = inputs.sum(-1) + targets.sum(-1)
    return (numerator + 1) / (denominator + 1)


def downsample_target_masks(masks, stride: int, size_divisibility: int = 32) -> torch.Tensor:
    """Target masks (list of [T, H_i, W_i]) -> padded to a multiple of ``size_divisibility`` and sampled at
    the centres of the ``stride`` grid -> [B, T, H_p/stride, W_p/stride] float."""
    t = max(m.shape[0] for m in masks)
    h = max(m.shape[-2] for m in masks)
    w = max(m.shape[-1] for m in masks)
    h = (h + size_divisibility - 1) // size_divisibility * size_divisibility
    w = (w + size_divisibility - 1) // size_divisibility * size_divisibility
    padded = masks[0].new_zeros((len(masks), t, h, w), dtype=torch.float32)
    for dst, m in zip(padded, masks):
        dst[: m.shape[0], : m.shape[1], : m.shape[2]] = m
    start = stride // 2
    return padded[:, :, start::stride, start::stride]
