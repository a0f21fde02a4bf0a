"""A COCO RLE whose counts are truncated is named (file, object, frame) by the checker, the MeViS loader and the
evaluators, instead of decoding into a garbage mask that changes from run to run."""
import json
import shutil

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from conftest import REFERENCE_DIR
from rvos.datasets.checks import check_dataset
from rvos.datasets.mevis import MeViSDataset
from rvos.datasets.synthetic import make_dataset
from rvos.evaluation.a2d import GT_FILE_NAMES, evaluate_referring_segmentation
from rvos.evaluation.mevis import evaluate_mevis
from rvos.util.rle import RLEError, check_rle, decode_rle, decode_rles, rle_problem, run_lengths

MEVIS_METRICS = REFERENCE_DIR / "metrics" / "mevis"
A2D_CASE = REFERENCE_DIR / "metrics" / "a2d" / "a2d_sentences"


def _encode(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


def _reference_runs(counts: bytes) -> list:
    """pycocotools' rleFrString, transcribed literally (the independent reading the check must agree with)."""
    runs, position = [], 0
    while position < len(counts):
        value, shift, more = 0, 0, True
        while more:
            char = counts[position] - 48
            value |= (char & 0x1F) << 5 * shift
            more = bool(char & 0x20)
            position, shift = position + 1, shift + 1
            if not more and char & 0x10:
                value |= -1 << 5 * shift
        runs.append(value + (runs[-2] if len(runs) > 2 else 0))
    return runs


def _truncate_one_rle(mask_dict_path, keep_fraction=0.5):
    """Cut the counts of the longest RLE of a mask_dict.json in place; returns (anno_id, frame index)."""
    mask_dict = json.loads(mask_dict_path.read_text())
    anno_id, frame = max(((a, i) for a, rles in mask_dict.items() for i, r in enumerate(rles) if r),
                         key=lambda key: len(mask_dict[key[0]][key[1]]["counts"]))
    counts = mask_dict[anno_id][frame]["counts"]
    mask_dict[anno_id][frame]["counts"] = counts[: int(len(counts) * keep_fraction)]
    mask_dict_path.write_text(json.dumps(mask_dict))
    return anno_id, frame


def test_runs_agree_with_pycocotools_on_random_masks():
    rng = np.random.default_rng(0)
    for trial in range(60):
        height, width = (int(v) for v in rng.integers(1, 90, 2))
        mask = rng.random((height, width)) < rng.random()
        if trial % 2:
            mask[:] = False
            mask[height // 4: height // 2 + 1, width // 3:] = True
        rle = _encode(mask)
        assert run_lengths(rle["counts"]).tolist() == _reference_runs(rle["counts"].encode())
        assert check_rle(rle, "mask") == (height, width)
        assert np.array_equal(decode_rle(rle, "mask"), mask)


def test_every_truncation_of_a_valid_rle_is_refused():
    rng = np.random.default_rng(1)
    mask = rng.random((40, 50)) < 0.3
    counts = _encode(mask)["counts"]
    for cut in range(len(counts)):
        problem = rle_problem({"size": [40, 50], "counts": counts[:cut]})
        assert problem is not None and ("truncated" in problem or "impossible" in problem), (cut, problem)


@pytest.mark.parametrize("rle, message", [
    ({"size": [4, 5], "counts": "0d0~"}, "'~' at position 3 is not an RLE digit"),
    ({"size": [4, 5], "counts": [3, 4]}, "cover 7 pixels but its size 4x5 has 20"),
    ({"size": [4, 5], "counts": [25, -5]}, "negative run"),
    ({"size": [4], "counts": "0d0"}, "RLE size must be [height, width]"),
    ({"counts": "0d0"}, "expected a COCO RLE dict"),
])
def test_malformed_rles_say_what_is_wrong(rle, message):
    with pytest.raises(RLEError) as error:
        decode_rles([rle], ["mask_dict.json (anno_id 7, frame 2)"])
    assert str(error.value).startswith("mask_dict.json (anno_id 7, frame 2): ") and message in str(error.value)


def test_uncompressed_counts_decode_like_pycocotools():
    mask = np.zeros((6, 4), dtype=bool)
    mask[1:4, 2] = True
    runs = [int(v) for v in run_lengths(_encode(mask)["counts"])]
    assert np.array_equal(decode_rle({"size": [6, 4], "counts": runs}, "uncompressed"), mask)


@pytest.fixture(scope="module")
def mevis_root(tmp_path_factory):
    return make_dataset("mevis", tmp_path_factory.mktemp("mevis") / "mevis", seed=2, num_train_videos=3,
                        num_valid_u_videos=1, num_valid_videos=1)


def test_checker_names_the_truncated_rle(mevis_root, tmp_path):
    root = shutil.copytree(mevis_root, tmp_path / "mevis")
    mask_dict = root / "train" / "mask_dict.json"
    anno_id, frame = _truncate_one_rle(mask_dict)
    problems = check_dataset("mevis", root)
    assert [p.path for p in problems] == [mask_dict]
    assert f"anno_id {anno_id} frame {frame}" in problems[0].message and "truncated" in problems[0].message


def test_loader_refuses_the_truncated_rle_naming_it(mevis_root, tmp_path):
    root = shutil.copytree(mevis_root, tmp_path / "mevis")
    anno_id, frame = _truncate_one_rle(root / "train" / "mask_dict.json")
    dataset = MeViSDataset(root / "train", lambda frames, target: (frames, target), num_frames=1)
    sample = next(s for s in dataset.samples if anno_id in s.referent)
    image = Image.open(dataset.frame_path(sample.video, sample.frames[frame]))
    with pytest.raises(RLEError, match=rf"mask_dict\.json \(anno_id {anno_id}, frame {frame}\): .*truncated"):
        dataset.frame_mask(sample, frame, image)
    other = next(s for s in dataset.samples if anno_id not in s.referent)  # the rest of the data still loads
    assert dataset.frame_mask(other, 0, Image.open(dataset.frame_path(other.video, other.frames[0]))).ndim == 2


@pytest.mark.parametrize("drop_broken_expressions", [False, True])
def test_mevis_evaluator_refuses_a_truncated_ground_truth_rle(tmp_path, drop_broken_expressions):
    mask_dict = shutil.copy(MEVIS_METRICS / "valid_u" / "mask_dict.json", tmp_path / "mask_dict.json")
    predictions = shutil.copytree(MEVIS_METRICS / "pred", tmp_path / "pred")
    before = {p: p.read_bytes() for p in predictions.rglob("*.png")}
    anno_id, frame = _truncate_one_rle(mask_dict)
    with pytest.raises(RLEError, match=rf"{mask_dict} \(anno_id {anno_id}\), frame {frame}: .*truncated"):
        evaluate_mevis(MEVIS_METRICS / "valid_u" / "meta_expressions.json", mask_dict, predictions, workers=2,
                       drop_broken_expressions=drop_broken_expressions)
    assert {p: p.read_bytes() for p in predictions.rglob("*.png")} == before


def test_a2d_evaluator_refuses_a_truncated_rle(tmp_path):
    gt = json.loads((A2D_CASE / GT_FILE_NAMES["a2d"]).read_text())
    annotation = max(gt["annotations"], key=lambda a: len(a["segmentation"]["counts"]))
    annotation["segmentation"]["counts"] = annotation["segmentation"]["counts"][:-3]
    gt_path = tmp_path / GT_FILE_NAMES["a2d"]
    gt_path.write_text(json.dumps(gt))
    with pytest.raises(RLEError, match=rf"{gt_path} \(annotation {annotation['id']}, image .*\): .*truncated"):
        evaluate_referring_segmentation(gt_path, A2D_CASE / "predictions.json")
    predictions = json.loads((A2D_CASE / "predictions.json").read_text())
    predictions[4]["segmentation"]["counts"] = predictions[4]["segmentation"]["counts"][:5]
    with pytest.raises(RLEError, match=r"predictions \(prediction 4, image .*\): .*(truncated|impossible)"):
        evaluate_referring_segmentation(A2D_CASE / GT_FILE_NAMES["a2d"], predictions)
