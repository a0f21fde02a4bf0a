"""RefCOCO / RefCOCO+ / RefCOCOg box metrics (REC), as ReferFormer's ``engine.evaluate`` on RefCOCO
(``calculate_bbox_precision_at_k_and_iou_metrics`` of its ``datasets/a2d_eval.py``).

Behaviour reproduced: per GT "image" (one expression, one annotation), the top-1 prediction is the one with the
highest score (the last in list order among equal scores, Python's stable sort then ``[-1]``); its box is absolute
xyxy at the original size (``PostProcess``), the GT ``bbox`` is COCO xywh and converted to xyxy; the IoU is
computed in float32 as ``(I + 1e-6) / (U + 1e-6)`` (intersection clamped at 0, areas (x1 - x0)(y1 - y0));
``bbox_P@k`` counts IoU > k strictly; ``bbox_overall_iou`` = sum(I) / sum(U); ``bbox_mean_iou`` = mean IoU.
The MDETR-style ``RefExpEvaluator`` (GIoU >= 0.5, precision @1/5/10) is in the original repository but not used by
it ("memory error"), so it is not reproduced.
"""
from typing import Dict, List, Sequence

import numpy as np
import torch

from rvos.evaluation.a2d import PRECISION_THRESHOLDS

_EPS = 1e-6


def xywh_to_xyxy(box: Sequence[float]) -> List[float]:
    """COCO [x, y, w, h] -> [x0, y0, x1, y1]."""
    x, y, w, h = box
    return [x, y, x + w, y + h]


def box_iou_parts(pred: Sequence[float], gt: Sequence[float]):
    """float32 (IoU, intersection, union) of two xyxy boxes, as the original (tensors of 4 floats)."""
    a, b = torch.tensor([pred], dtype=torch.float32), torch.tensor([gt], dtype=torch.float32)
    lt = torch.max(a[:, :2], b[:, :2])
    rb = torch.min(a[:, 2:], b[:, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[:, 0] * wh[:, 1]
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a + area_b - inter
    iou = (inter + _EPS) / (union + _EPS)
    return iou.item(), inter.item(), union.item()


def top1_box_metrics(gt: dict, predictions: Sequence[dict], source: str = "predictions") -> Dict[str, float]:
    """``bbox_P@0.5`` ... ``bbox_P@0.9``, ``bbox_overall_iou``, ``bbox_mean_iou`` of ``predictions``
    (``{"image_id", "bbox": [x0, y0, x1, y1], "score"}``) against a COCO-format referring GT (its parsed JSON: one
    annotation per image). A GT image without a prediction, or without a GT box, is a ValueError naming it."""
    gt_boxes = {}
    for ann in gt["annotations"]:
        if "bbox" not in ann or len(ann["bbox"]) != 4:
            raise ValueError(f"ground-truth annotation {ann.get('id')} of image {ann['image_id']} has no 4-number bbox")
        gt_boxes.setdefault(ann["image_id"], ann["bbox"])
    by_image: Dict = {}
    for prediction in predictions:
        by_image.setdefault(prediction["image_id"], []).append(prediction)
    ious, intersections, unions = [], [], []
    for image in gt["images"]:
        image_id = image["id"]
        if image_id not in gt_boxes:
            raise ValueError(f"image {image_id} of the ground truth has no annotation")
        if image_id not in by_image:
            raise ValueError(f"{source}: no prediction for ground-truth image {image_id}")
        top1 = sorted(by_image[image_id], key=lambda p: p["score"])[-1]
        iou, inter, union = box_iou_parts(top1["bbox"], xywh_to_xyxy(gt_boxes[image_id]))
        ious.append(iou)
        intersections.append(inter)
        unions.append(union)
    if not ious:
        raise ValueError("the ground truth has no images")
    metrics = {f"bbox_P@{k}": sum(iou > k for iou in ious) / len(ious) for k in PRECISION_THRESHOLDS}
    metrics["bbox_overall_iou"] = sum(intersections) / sum(unions) if sum(unions) else float("nan")
    metrics["bbox_mean_iou"] = float(np.mean(ious))
    return metrics
