"""A2D-Sentences / JHMDB-Sentences metrics against ReferFormer's engine.evaluate_a2d runs (reference a2d)."""
import copy
import json

import pytest

from conftest import REFERENCE_DIR
from rvos.evaluation.a2d import GT_FILE_NAMES, evaluate_referring_segmentation

A2D = REFERENCE_DIR / "metrics" / "a2d"
CASES = {"a2d_sentences": "a2d", "a2d_edge": "a2d", "jhmdb_sentences": "jhmdb"}
TOLERANCE = 1e-12  # means of floats: summation-order ulps only


def _load(path):
    with open(path) as handle:
        return json.load(handle)


def gt_path(case):
    return A2D / case / GT_FILE_NAMES[CASES[case]]


@pytest.fixture(scope="module")
def results():
    return {case: evaluate_referring_segmentation(gt_path(case), A2D / case / "predictions.json") for case in CASES}


@pytest.mark.parametrize("case", sorted(CASES))
def test_metrics_match_official(results, case):
    expected = _load(A2D / case / "expected.json")["eval_metrics"]
    for name, value in expected.items():
        assert results[case][name] == pytest.approx(value, rel=0, abs=TOLERANCE), name


@pytest.mark.parametrize("case", sorted(CASES))
def test_top1_choice_and_float32_iou_match_official(results, case):
    """Score ties go to the last query; IoU = (I + 1e-6) / (U + 1e-6) in float32 (empty/empty = 1)."""
    expected = _load(A2D / case / "expected.json")["per_sample_top1"]
    assert list(results[case]["per_image"]) == list(expected)
    for image_id, sample in expected.items():
        ours = results[case]["per_image"][image_id]
        assert ours["top1_index"] == sample["top1_query_index"]
        assert ours["iou"] == sample["top1_iou_float32"]
        assert (ours["intersection"], ours["union"]) == (sample["intersection"], sample["union"])


def test_prediction_list_is_accepted_and_left_unchanged(results):
    predictions = _load(A2D / "a2d_sentences" / "predictions.json")
    original = copy.deepcopy(predictions)
    from_list = evaluate_referring_segmentation(gt_path("a2d_sentences"), predictions)
    assert predictions == original
    assert from_list == results["a2d_sentences"]


def test_top1_only_map_uses_one_prediction_per_image():
    predictions = _load(A2D / "a2d_sentences" / "predictions.json")
    top1 = _load(A2D / "a2d_sentences" / "expected.json")["per_sample_top1"]
    by_image = {}
    for prediction in predictions:
        by_image.setdefault(prediction["image_id"], []).append(prediction)
    kept = [by_image[image_id][sample["top1_query_index"]] for image_id, sample in top1.items()]
    strict = evaluate_referring_segmentation(gt_path("a2d_sentences"), predictions, top1_only_map=True)
    filtered = evaluate_referring_segmentation(gt_path("a2d_sentences"), kept)
    assert strict["mAP 0.5:0.95"] == filtered["mAP 0.5:0.95"]
    assert strict["mAP 0.5:0.95"] != evaluate_referring_segmentation(gt_path("a2d_sentences"), predictions)[
        "mAP 0.5:0.95"]


def test_unknown_and_missing_image_ids_are_reported():
    predictions = _load(A2D / "jhmdb_sentences" / "predictions.json")
    unknown = [dict(predictions[0], image_id="v_not_in_gt_f_1")] + predictions
    with pytest.raises(ValueError, match="v_not_in_gt_f_1"):
        evaluate_referring_segmentation(gt_path("jhmdb_sentences"), unknown)
    dropped_id = predictions[0]["image_id"]
    with pytest.raises(ValueError, match=dropped_id):
        evaluate_referring_segmentation(gt_path("jhmdb_sentences"),
                                        [p for p in predictions if p["image_id"] != dropped_id])
