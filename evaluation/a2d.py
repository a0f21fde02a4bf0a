"""A2D-Sentences / JHMDB-Sentences metrics, as ReferFormer ``engine.evaluate_a2d`` (MTTR ``metrics.py``).

Behaviour reproduced (shared/reference/metrics/SPEC.md section 7):

* mAP: pycocotools ``COCOeval(gt, gt.loadRes(predictions), "segm")`` with ``useCats = 0``, on **every**
  prediction (all queries of every image, as the papers report); ``top1_only_map=True`` keeps only each image's
  top-1 prediction instead (the stricter number discussed in ReferFormer issue #39).
* Top-1 metrics over the GT images (COCO image ids, one annotation each): the top-1 prediction is the
  highest-scoring one, the last in list order among equal scores. IoU = (I + 1e-6) / (U + 1e-6) in float32, as
  the official torch code; P@k counts IoU > k strictly; overall IoU = sum(I) / sum(U); mean IoU = mean of the
  float32 IoUs.

Errors instead of the official crashes: a prediction whose image id is not in the GT, or a GT image without any
prediction, raises ``ValueError`` naming the ids.
"""
import contextlib
import copy
import io
import logging
from pathlib import Path
from typing import Dict, List, Sequence, Union

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from rvos.datasets.base import read_json
from rvos.evaluation.report import TABLE_COLUMNS, format_table
from rvos.util.rle import check_rle, decode_rles

logger = logging.getLogger(__name__)

GT_FILE_NAMES = {
    "a2d": "a2d_sentences_test_annotations_in_coco_format.json",
    "jhmdb": "jhmdb_sentences_gt_annotations_in_coco_format.json",
}
AP_NAMES = ("mAP 0.5:0.95", "AP 0.5", "AP 0.75", "AP 0.5:0.95 S", "AP 0.5:0.95 M", "AP 0.5:0.95 L")
PRECISION_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)
_IOU_EPS = np.float32(1e-6)


def evaluate_referring_segmentation(gt_path: Path, predictions: Union[Path, Sequence[dict]],
                                    top1_only_map: bool = False) -> Dict:
    """mAP, P@k, overall and mean IoU of COCO-result predictions against a COCO-format referring GT file.

    predictions: a list of ``{"image_id", "category_id", "segmentation": RLE, "score"}`` or the path of a JSON
    file holding one. Returns the official ``eval_metrics`` keys plus ``"per_image"``: for every GT image id,
    the top-1 prediction's index among that image's predictions, its IoU, intersection and union.
    """
    gt_path = Path(gt_path)
    if not gt_path.is_file():
        raise FileNotFoundError(f"ground-truth file not found: {gt_path}")
    source = "predictions"
    if not isinstance(predictions, (list, tuple)):
        source = str(predictions)
        predictions = read_json(Path(predictions))
    predictions = copy.deepcopy(list(predictions))  # loadRes adds keys to the dicts
    coco_gt = COCO()
    coco_gt.dataset = read_json(gt_path)
    with contextlib.redirect_stdout(io.StringIO()) as pycocotools_log:
        coco_gt.createIndex()
    _check_image_ids(coco_gt, predictions, gt_path)
    _check_rles(coco_gt, predictions, gt_path, source)

    per_image = top1_per_image(coco_gt, predictions)
    map_predictions = predictions
    if top1_only_map:
        by_image = _predictions_by_image(predictions)
        map_predictions = [by_image[image_id][entry["top1_index"]] for image_id, entry in per_image.items()]
    metrics = dict(zip(AP_NAMES, coco_segm_map(coco_gt, map_predictions)))
    metrics.update(top1_metrics(per_image))
    logger.debug(pycocotools_log.getvalue())
    logger.info("%s", format_table(f"{gt_path.name} ({len(per_image)} images)", {"all": metrics},
                                   TABLE_COLUMNS["a2d"]))
    return {**metrics, "per_image": per_image}


def coco_segm_map(coco_gt: COCO, predictions: List[dict]) -> List[float]:
    """COCOeval segm with categories ignored -> stats[0:6] (mAP, AP50, AP75, AP S/M/L; -1 without GT)."""
    with contextlib.redirect_stdout(io.StringIO()) as pycocotools_log:
        coco_eval = COCOeval(coco_gt, coco_gt.loadRes(predictions), iouType="segm")
        coco_eval.params.useCats = 0
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    logger.debug(pycocotools_log.getvalue())
    return [float(value) for value in coco_eval.stats[:6]]


def top1_per_image(coco_gt: COCO, predictions: List[dict]) -> Dict[str, Dict]:
    """For every GT image: the top-1 prediction (highest score, last among ties) and its float32 IoU, I and U."""
    by_image = _predictions_by_image(predictions)
    per_image = {}
    for image_id in coco_gt.imgs:
        scores = [prediction["score"] for prediction in by_image[image_id]]
        top1 = len(scores) - 1 - int(np.argmax(scores[::-1]))
        gt_rle, pred_rle = coco_gt.imgToAnns[image_id][0]["segmentation"], by_image[image_id][top1]["segmentation"]
        if list(gt_rle["size"]) != list(pred_rle["size"]):
            raise ValueError(f"image {image_id}: predicted mask size {pred_rle['size']} differs from the GT size "
                             f"{gt_rle['size']}")
        gt_mask, pred_mask = decode_rles([gt_rle, pred_rle], [f"ground truth of image {image_id}",
                                                              f"top-1 prediction of image {image_id}"])
        intersection = np.float32(np.count_nonzero(gt_mask & pred_mask))
        union = np.float32(np.count_nonzero(gt_mask | pred_mask))
        iou = (intersection + _IOU_EPS) / (union + _IOU_EPS)
        per_image[image_id] = {"top1_index": top1, "iou": float(iou), "intersection": float(intersection),
                               "union": float(union)}
    return per_image


def top1_metrics(per_image: Dict[str, Dict]) -> Dict[str, float]:
    """P@0.5..0.9 (IoU > k), overall IoU (sum I / sum U) and mean IoU from ``top1_per_image`` entries."""
    ious = [entry["iou"] for entry in per_image.values()]
    metrics = {f"P@{k}": sum(iou > k for iou in ious) / len(ious) for k in PRECISION_THRESHOLDS}
    total_intersection = sum(entry["intersection"] for entry in per_image.values())
    total_union = sum(entry["union"] for entry in per_image.values())
    if total_union == 0:
        logger.warning("every ground truth and top-1 prediction is empty: overall IoU is undefined (NaN)")
    metrics["overall_iou"] = total_intersection / total_union if total_union else float("nan")
    metrics["mean_iou"] = float(np.mean(ious))
    return metrics


def _predictions_by_image(predictions: List[dict]) -> Dict[str, List[dict]]:
    by_image: Dict[str, List[dict]] = {}
    for prediction in predictions:
        by_image.setdefault(prediction["image_id"], []).append(prediction)
    return by_image


def _check_image_ids(coco_gt: COCO, predictions: List[dict], gt_path: Path) -> None:
    predicted = {prediction["image_id"] for prediction in predictions}
    unknown = sorted(map(str, predicted - set(coco_gt.imgs)))
    if unknown:
        raise ValueError(f"{len(unknown)} predicted image ids are not in {gt_path}, e.g. {unknown[:5]}")
    unpredicted = sorted(map(str, set(coco_gt.imgs) - predicted))
    if unpredicted:
        raise ValueError(f"{len(unpredicted)} images of {gt_path} have no prediction, e.g. {unpredicted[:5]}")


def _check_rles(coco_gt: COCO, predictions: List[dict], gt_path: Path, source: str) -> None:
    """Every GT and predicted RLE covers its size exactly (pycocotools scores a truncated one as garbage)."""
    for annotation in coco_gt.anns.values():
        if isinstance(annotation.get("segmentation"), dict):
            check_rle(annotation["segmentation"], f"{gt_path} (annotation {annotation.get('id')}, image "
                                                  f"{annotation.get('image_id')})")
    for index, prediction in enumerate(predictions):
        check_rle(prediction.get("segmentation"), f"{source} (prediction {index}, image {prediction.get('image_id')})")
