"""``--eval`` plumbing on the tiny model: engine.evaluate + the prediction maker turn outputs into COCO results
at the original size (every query, A2D and RefCOCO post-processors), scored against a COCO-format ground truth
with RLE (A2D) or polygon (RefCOCO) masks."""
import json

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

from rvos.engine import evaluate
from rvos.models import build_model
from rvos.models.postprocess import build_postprocessors
from rvos.opts import parse_args
from train_support import tiny_args, tiny_world
from rvos.util.misc import nested_tensor_from_videos_list
from rvos.evaluation.referring import PredictionMaker, score_predictions
from rvos.util.rle import decode_rle

ORIG_H, ORIG_W = 48, 60
GT_BOX = (10, 8, 40, 30)  # x0, y0, x1, y1 of the ground-truth rectangle


def box_rle() -> dict:
    """The ground-truth rectangle as a COCO RLE with str counts."""
    mask = np.zeros((ORIG_H, ORIG_W), dtype=np.uint8)
    x0, y0, x1, y1 = GT_BOX
    mask[y0:y1, x0:x1] = 1
    rle = mask_utils.encode(np.asfortranarray(mask))
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


def ground_truth_file(path, image_ids, polygon: bool):
    x0, y0, x1, y1 = GT_BOX
    segmentation = [[x0, y0, x1, y0, x1, y1, x0, y1]] if polygon else box_rle()
    data = {"images": [{"id": i, "height": ORIG_H, "width": ORIG_W} for i in image_ids],
            "annotations": [{"id": k + 1, "image_id": i, "category_id": 1, "iscrowd": 0, "segmentation": segmentation,
                             "area": float((x1 - x0) * (y1 - y0)), "bbox": [x0, y0, x1 - x0, y1 - y0]}
                            for k, i in enumerate(image_ids)],
            "categories": [{"id": 1, "name": "object"}]}
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("dataset, image_ids", [("a2d", ["v_a_f_1_i_0", "v_b_f_3_i_1"]), ("refcoco", [1, 2])])
def test_eval_predictions_are_scored_against_coco_ground_truth(tmp_path_factory, tmp_path, dataset, image_ids):
    args = parse_args(tiny_args(tiny_world(tmp_path_factory), None, "--dataset_file", dataset))
    torch.manual_seed(0)
    model, _, _ = build_model(args)
    postprocessors = build_postprocessors(args, dataset)
    clips = [torch.rand(2, 3, 64, 64) for _ in image_ids]
    targets = [{"caption": "the red circle", "size": torch.tensor([64, 64]),
                "orig_size": torch.tensor([ORIG_H, ORIG_W]), "valid_indices": torch.tensor([0]),
                "image_id": torch.tensor([i]) if isinstance(i, int) else i} for i in image_ids]
    batches = [(nested_tensor_from_videos_list(clips[:1], 32), targets[:1]),
               (nested_tensor_from_videos_list(clips[1:], 32), targets[1:])]

    predictions = evaluate(model, batches, torch.device("cpu"), PredictionMaker(postprocessors))

    assert [p["image_id"] for p in predictions] == [i for i in image_ids for _ in range(args.num_queries)]
    assert all(decode_rle(p["segmentation"], "prediction").shape == (ORIG_H, ORIG_W) for p in predictions)
    assert all(0.0 <= p["score"] <= 1.0 for p in predictions)
    gt = ground_truth_file(tmp_path / "gt.json", image_ids, polygon=dataset == "refcoco")
    metrics = score_predictions(gt, predictions)
    assert {"mAP 0.5:0.95", "P@0.5", "overall_iou", "mean_iou"} <= set(metrics)
    assert 0.0 <= metrics["overall_iou"] <= 1.0
    # RefCOCO predictions carry each query's box (xyxy at the original size): REC precision is reported too
    assert ("bbox_P@0.5" in metrics) == (dataset == "refcoco")
    if dataset == "refcoco":
        assert all(len(p["bbox"]) == 4 and p["bbox"][0] <= p["bbox"][2] for p in predictions)
        boxed = [dict(p, bbox=[GT_BOX[0], GT_BOX[1], GT_BOX[2], GT_BOX[3]]) for p in predictions]
        assert score_predictions(gt, boxed)["bbox_P@0.5"] == 1.0

    perfect = [dict(p, segmentation=box_rle(), score=1.0) for p in predictions]
    assert score_predictions(gt, perfect)["overall_iou"] == pytest.approx(1.0)
