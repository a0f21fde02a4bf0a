"""Box conversions and the IoU / GIoU of the ReferFormer family.

torchvision.ops has ``box_convert`` and ``generalized_box_iou``, but the family's GIoU adds
1e-6 to numerator and denominator (not plain DETR); reproducing the reference losses needs
that variant, so the pairwise IoU/GIoU live here.
"""
import torch
from torchvision.ops import box_area, box_convert


def box_cxcywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    """[..., 4] (cx, cy, w, h) -> [..., 4] (x0, y0, x1, y1)."""
    return box_convert(boxes, "cxcywh", "xyxy")


def box_xyxy_to_cxcywh(boxes: torch.Tensor) -> torch.Tensor:
    """[..., 4] (x0, y0, x1, y1) -> [..., 4] (cx, cy, w, h)."""
    return box_convert(boxes, "xyxy", "cxcywh")


def box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor, eps: float = 1e-6):
    """Pairwise IoU of [N, 4] and [M, 4] xyxy boxes -> (iou [N, M], union [N, M]).

    ``eps`` is added to intersection and union, as the family's code does.
    """
    area1 = box_area(boxes1)
    area2 = box_area(boxes2)
    lt = torch.max(boxes1[:, None, :2], boxes2[:, :2])
    rb = torch.min(boxes1[:, None, 2:], boxes2[:, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area1[:, None] + area2 - inter
    return (inter + eps) / (union + eps), union


def generalized_box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Pairwise generalized IoU of [N, 4] and [M, 4] xyxy boxes -> [N, M]."""
    iou, union = box_iou(boxes1, boxes2, eps)
    lt = torch.min(boxes1[:, None, :2], boxes2[:, :2])
    rb = torch.max(boxes1[:, None, 2:], boxes2[:, 2:])
    wh = (rb - lt).clamp(min=0)
    area = wh[..., 0] * wh[..., 1]
    return iou - (area - union + eps) / (area + eps)


def masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    """[N, H, W] bool masks -> [N, 4] xyxy boxes of inclusive pixel extents; empty masks give zeros."""
    out = torch.zeros((masks.shape[0], 4), dtype=torch.float32, device=masks.device)
    nonempty = masks.flatten(1).any(1)
    if nonempty.any():
        from torchvision.ops import masks_to_boxes as tv_masks_to_boxes
        out[nonempty] = tv_masks_to_boxes(masks[nonempty]).float()
    return out
