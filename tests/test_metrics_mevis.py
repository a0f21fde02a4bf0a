"""MeViS valid_u evaluation against the official eval_mevis.py run (reference mevis)."""
import json
import shutil

import cv2
import numpy as np
import pytest

from conftest import REFERENCE_DIR
from rvos.evaluation.mevis import PredictionError, evaluate_mevis
from rvos.util.rle import decode_rle

MEVIS = REFERENCE_DIR / "metrics" / "mevis"
META, MASK_DICT = MEVIS / "valid_u" / "meta_expressions.json", MEVIS / "valid_u" / "mask_dict.json"
TOLERANCE = 1e-12  # SPEC: the official means are taken in worker completion order (last-ulp differences)


def _load(path):
    with open(path) as handle:
        return json.load(handle)


EXPECTED = _load(MEVIS / "expected.json")["results"]


def assert_printed_values(results, printed):
    for key in ("J", "F", "J&F"):
        assert results[key] == pytest.approx(printed[key], rel=0, abs=TOLERANCE)


@pytest.fixture(scope="module")
def official_layout_results():
    return evaluate_mevis(META, MASK_DICT, MEVIS / "pred", workers=1)


def test_dataset_scores_match_official(official_layout_results):
    assert_printed_values(official_layout_results, EXPECTED["main"]["printed"])
    assert official_layout_results["n_expressions"] == EXPECTED["main"]["n_expressions_scored"]


def test_per_expression_scores_match_official(official_layout_results):
    official = _load(MEVIS / "official_per_expression.json")
    assert official_layout_results["per_expression"] == {key: [float(j), float(f)] for key, (j, f) in official.items()}


def test_missing_video_scores_zero_as_officially(official_layout_results):
    videos = _load(META)["videos"]
    missing = [video for video in videos if not (MEVIS / "pred" / video).is_dir()]
    assert missing and official_layout_results["missing_videos"] == missing
    for video in missing:
        for exp_id in videos[video]["expressions"]:
            assert official_layout_results["per_expression"][f"{video}_{exp_id}"] == [0.0, 0.0]


def test_worker_pool_gives_the_same_results(official_layout_results):
    assert evaluate_mevis(META, MASK_DICT, MEVIS / "pred", workers=2) == official_layout_results


@pytest.fixture()
def pred_copy(tmp_path):
    target = tmp_path / "pred"
    shutil.copytree(MEVIS / "pred", target)
    return target


def test_missing_expression_folder_is_an_error_naming_it(pred_copy):
    folder = pred_copy / "b0000000002b" / "2"
    shutil.rmtree(folder)
    with pytest.raises(PredictionError, match=str(folder)):
        evaluate_mevis(META, MASK_DICT, pred_copy)


def test_dropping_broken_expressions_reproduces_the_official_variant(pred_copy):
    variant = EXPECTED["variant_missing_expression_folder"]
    shutil.rmtree(pred_copy / "b0000000002b" / "2")
    results = evaluate_mevis(META, MASK_DICT, pred_copy, workers=2, drop_broken_expressions=True)
    assert_printed_values(results, variant["printed"])
    assert results["n_expressions"] == variant["n_expressions_scored"]
    assert sorted(results["dropped_expressions"]) == variant["missing_keys_in_per_expression_json"]


def test_missing_frame_png_is_an_error_naming_it(pred_copy):
    missing = pred_copy / "a0000000001a" / "1" / "00004.png"
    missing.unlink()
    with pytest.raises(PredictionError, match=str(missing)):
        evaluate_mevis(META, MASK_DICT, pred_copy)


def test_wrong_size_png_is_an_error_naming_it(pred_copy):
    path = pred_copy / "c0000000003c" / "0" / "00002.png"
    cv2.imwrite(str(path), np.zeros((10, 12), dtype=np.uint8))
    with pytest.raises(PredictionError, match=f"{path}.*12x10"):
        evaluate_mevis(META, MASK_DICT, pred_copy)


def test_ground_truth_written_as_predictions_scores_one(tmp_path):
    """Predictions = union of every expression's decoded RLEs, written as 0/255 PNGs (videos without any RLE
    are skipped: the evaluator then scores them 0 by the missing-video rule)."""
    videos, mask_dict = _load(META)["videos"], _load(MASK_DICT)
    for video, entry in videos.items():
        for exp_id, expression in entry["expressions"].items():
            folder = tmp_path / video / exp_id
            folder.mkdir(parents=True)
            for index, frame in enumerate(entry["frames"]):
                rles = [mask_dict[str(anno_id)][index] for anno_id in expression["anno_id"]]
                shape = next(rle["size"] for anno in expression["anno_id"] for rle in mask_dict[str(anno)] if rle)
                union = np.zeros(shape, dtype=bool)
                for rle in rles:
                    if rle is not None:
                        union |= decode_rle(rle, "ground truth")
                cv2.imwrite(str(folder / f"{frame}.png"), union.astype(np.uint8) * 255)
    results = evaluate_mevis(META, MASK_DICT, tmp_path)
    assert results["J"] == results["F"] == results["J&F"] == 1.0
    assert results["n_expressions"] == sum(len(entry["expressions"]) for entry in videos.values())
