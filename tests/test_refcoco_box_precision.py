"""RefCOCO REC box metrics (``evaluation.boxes``, hooked into ``score_predictions`` as ``main.py --eval`` calls it):
on a synthetic RefCOCO val split, precision@0.5 of the top-1 box equals a hand computation with
``torchvision.ops.box_iou`` on hand-listed boxes."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from torchvision.ops import box_iou

from rvos.evaluation.boxes import box_iou_parts, top1_box_metrics
from rvos.evaluation.referring import score_predictions

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def refcoco_val(tmp_path_factory):
    root = tmp_path_factory.mktemp("refcoco") / "coco"
    subprocess.run([sys.executable, str(REPO / "tools" / "make_synthetic_data.py"), "--dataset", "refcoco", "--root",
                    str(root)], check=True, capture_output=True)
    gt_path = root / "refcoco" / "instances_refcoco_val.json"
    return gt_path, json.loads(gt_path.read_text())


def empty_rle(image):
    rle = mask_utils.encode(np.asfortranarray(np.zeros((image["height"], image["width"]), dtype=np.uint8)))
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


def hand_predictions(gt):
    """Per image, hand-listed (score, xyxy box) predictions built around its GT box, cycling over four cases, and
    the index of the prediction the rule picks (highest score; the last one among equal scores)."""
    boxes = {ann["image_id"]: ann["bbox"] for ann in gt["annotations"]}
    cases = []
    for n, image in enumerate(gt["images"]):
        x, y, w, h = boxes[image["id"]]
        exact = [x, y, x + w, y + h]
        beside = [x + w, y, x + 2 * w, y + h]          # touches the GT box: IoU 0
        wider = [x, y, x + 1.5 * w, y + h]             # IoU 1 / 1.5
        case = n % 4
        if case == 0:
            listed, pick = [(0.9, exact), (0.1, beside)], 0
        elif case == 1:
            listed, pick = [(0.8, beside), (0.3, exact)], 0
        elif case == 2:
            listed, pick = [(0.2, exact), (0.7, wider)], 1
        else:
            listed, pick = [(0.6, exact), (0.6, beside)], 1
        cases.append((image, exact, listed, pick))
    return cases


def test_precision_equals_hand_computation(refcoco_val):
    gt_path, gt = refcoco_val
    cases = hand_predictions(gt)
    assert len(cases) >= 4, "the synthetic split should cover every case"
    predictions, ious = [], []
    for image, gt_xyxy, listed, pick in cases:
        for score, box in listed:
            predictions.append({"image_id": image["id"], "category_id": 1, "score": score, "bbox": box,
                                "segmentation": empty_rle(image)})
        ious.append(box_iou(torch.tensor([listed[pick][1]], dtype=torch.float64),
                            torch.tensor([gt_xyxy], dtype=torch.float64)).item())
    expected = {k: sum(iou > k for iou in ious) / len(ious) for k in (0.5, 0.6, 0.7)}
    assert 0 < expected[0.5] < 1

    metrics = top1_box_metrics(gt, predictions)
    for k, value in expected.items():
        assert metrics[f"bbox_P@{k}"] == pytest.approx(value, abs=1e-12)
    assert metrics["bbox_mean_iou"] == pytest.approx(float(np.mean(ious)), rel=1e-4, abs=1e-4)

    # the --eval path: mask metrics as before, box metrics added
    scored = score_predictions(gt_path, predictions)
    assert scored["bbox_P@0.5"] == pytest.approx(expected[0.5], abs=1e-12)
    assert {"mAP 0.5:0.95", "P@0.5", "overall_iou", "mean_iou"} <= set(scored)
    masks_only = score_predictions(gt_path, [{k: v for k, v in p.items() if k != "bbox"} for p in predictions])
    assert "bbox_P@0.5" not in masks_only
    assert {k: v for k, v in scored.items() if not k.startswith("bbox_")} == pytest.approx(masks_only, nan_ok=True)


def test_iou_exactly_half_is_not_counted():
    """IoU > 0.5 strictly; with areas this large the 1e-6 of the float32 rule is absorbed, so 200 / 400 stays 0.5."""
    iou, inter, union = box_iou_parts([0, 0, 20, 10], [0, 0, 20, 20])
    assert (iou, inter, union) == (0.5, 200.0, 400.0)
    gt = {"images": [{"id": 1}], "annotations": [{"id": 1, "image_id": 1, "bbox": [0, 0, 20, 20]}]}
    assert top1_box_metrics(gt, [{"image_id": 1, "score": 1.0, "bbox": [0, 0, 20, 10]}])["bbox_P@0.5"] == 0.0


def test_missing_prediction_names_the_image():
    gt = {"images": [{"id": 7}], "annotations": [{"id": 1, "image_id": 7, "bbox": [0, 0, 2, 2]}]}
    with pytest.raises(ValueError, match="image 7"):
        top1_box_metrics(gt, [])
