"""``main.py --eval`` (and the per-epoch evaluation of A2D / RefCOCO training): which splits are evaluated, how
model outputs become COCO-style predictions, and which ground-truth file scores them.

Scoring is ``evaluation.a2d.evaluate_referring_segmentation`` (mAP over every query's mask, P@k, overall
and mean IoU of the top-1 mask) for A2D-Sentences, JHMDB-Sentences and RefCOCO/+/g (whose COCO-format
annotation files have one annotation per expression "image", the same shape as the A2D ground truth). RefCOCO
predictions also carry the query's box, scored by ``evaluation.boxes.top1_box_metrics`` (REC: ``bbox_P@0.5``, ...).
"""
import json
import tempfile
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch
from pycocotools import mask as mask_utils

from rvos.evaluation.a2d import GT_FILE_NAMES, evaluate_referring_segmentation
from rvos.evaluation.boxes import top1_box_metrics
from rvos.datasets.base import read_json
from rvos.datasets.refexp import REFCOCO_NAMES, annotation_file

# dataset_file -> the (dataset name, image_set) pairs evaluated, as the original main.py / main_pretrain.py.
EVAL_SPLITS: Dict[str, Tuple[Tuple[str, str], ...]] = {
    "a2d": (("a2d", "val"),),
    "jhmdb": (("jhmdb", "val"),),
    **{name: ((name, "val"),) for name in REFCOCO_NAMES},
    "all": tuple((name, "val") for name in REFCOCO_NAMES),
}
# Datasets evaluated after every training epoch (the original A2D main.py and main_pretrain.py).
EVAL_DURING_TRAINING = ("a2d",) + REFCOCO_NAMES + ("all",)


def supports_eval(dataset_file: str) -> bool:
    return dataset_file in EVAL_SPLITS


def ground_truth_file(name: str, image_set: str, args) -> Path:
    """The COCO-format ground truth of an evaluated split."""
    if name == "a2d":
        return Path(args.a2d_path) / GT_FILE_NAMES["a2d"]
    if name == "jhmdb":
        return Path(args.jhmdb_path) / GT_FILE_NAMES["jhmdb"]
    return annotation_file(Path(args.coco_path), name, image_set)


def _rle(mask: torch.Tensor) -> dict:
    """[H, W] binary mask -> COCO RLE with str counts."""
    rle = mask_utils.encode(np.asfortranarray(mask.to(torch.uint8).cpu().numpy()))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def _image_id(target: dict):
    image_id = target["image_id"]
    if isinstance(image_id, torch.Tensor):
        return int(image_id.reshape(-1)[0])
    return image_id


class PredictionMaker:
    """Callable ``(outputs, targets) -> [{"image_id", "category_id": 1, "segmentation", "score"}, ...]``: every
    query's mask at the original size, as the original ``evaluate_a2d`` collected them; with the RefCOCO
    post-processors also its ``"bbox"`` (absolute xyxy at the original size, as the original ``evaluate``)."""

    def __init__(self, postprocessors):
        self.postprocessors = postprocessors

    def __call__(self, outputs: dict, targets: Sequence[dict]) -> List[dict]:
        orig_sizes = torch.stack([t["orig_size"] for t in targets])
        sizes = torch.stack([t["size"] for t in targets])
        if isinstance(self.postprocessors, dict):
            results = self.postprocessors["bbox"](outputs, orig_sizes)
            results = self.postprocessors["segm"](results, outputs, orig_sizes, sizes)
            per_image = [(r["scores"], [_rle(m[0]) for m in r["masks"]], r["boxes"].tolist()) for r in results]
        else:
            results = self.postprocessors(outputs, orig_sizes, sizes)
            per_image = [(r["scores"], r["rle_masks"], None) for r in results]
        predictions = []
        for target, (scores, rles, boxes) in zip(targets, per_image):
            image_id = _image_id(target)
            for i, (score, rle) in enumerate(zip(scores.tolist(), rles)):
                prediction = {"image_id": image_id, "category_id": 1, "segmentation": rle, "score": score}
                if boxes is not None:
                    prediction["bbox"] = boxes[i]
                predictions.append(prediction)
        return predictions


def with_rle_segmentations(gt_path: Path, out_dir: Path) -> Path:
    """A copy of a COCO-format ground truth whose polygon segmentations (RefCOCO) are RLE, as the
    referring-segmentation evaluator reads them; the file itself when it has no polygons (A2D, JHMDB)."""
    data = read_json(Path(gt_path))
    images = {image["id"]: image for image in data["images"]}
    polygons = [ann for ann in data["annotations"] if isinstance(ann["segmentation"], list)]
    if not polygons:
        return Path(gt_path)
    for ann in polygons:
        image = images[ann["image_id"]]
        rle = mask_utils.merge(mask_utils.frPyObjects(ann["segmentation"], image["height"], image["width"]))
        ann["segmentation"] = {"size": rle["size"], "counts": rle["counts"].decode("ascii")}
    converted = Path(out_dir) / f"{Path(gt_path).stem}_rle.json"
    converted.write_text(json.dumps(data))
    return converted


def score_predictions(gt_path: Path, predictions: List[dict]) -> Dict[str, float]:
    """The scalar metrics (mAP, AP50, ..., P@k, overall_iou, mean_iou) of ``predictions``; when they carry boxes
    (RefCOCO), also the box metrics ``bbox_P@k``, ``bbox_overall_iou``, ``bbox_mean_iou``. The masks are scored
    without the boxes (pycocotools would otherwise take the areas of the boxes)."""
    boxed = bool(predictions) and all("bbox" in p for p in predictions)
    masks = [{k: v for k, v in p.items() if k != "bbox"} for p in predictions] if boxed else predictions
    with tempfile.TemporaryDirectory() as scratch:
        results = evaluate_referring_segmentation(with_rle_segmentations(gt_path, Path(scratch)), masks)
    metrics = {k: float(v) for k, v in results.items() if k != "per_image"}
    if boxed:
        metrics.update(top1_box_metrics(read_json(Path(gt_path)), predictions, source=str(gt_path)))
    return metrics
