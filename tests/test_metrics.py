"""evaluation.metrics: J and F against the official values (reference davis_jf cases) and against the literal per-frame
transcription of the official code."""
import json

import numpy as np
import pytest

from conftest import REFERENCE_DIR
from rvos.evaluation.metrics import (boundary_f_measure, boundary_map, boundary_radius, disk_kernel, reference_boundary_f_measure,
                          reference_boundary_map, reference_region_similarity, region_and_boundary,
                          region_similarity)

DAVIS_JF = REFERENCE_DIR / "metrics" / "davis_jf"


def _load_cases(name):
    with open(DAVIS_JF / f"{name}.json") as handle:
        return {case["id"]: case for case in json.load(handle)["cases"]}


PAIRS = _load_cases("pairs")
SEQUENCES = _load_cases("sequences")


@pytest.fixture(scope="module")
def pair_arrays():
    return np.load(DAVIS_JF / "pairs.npz")


@pytest.fixture(scope="module")
def sequence_arrays():
    return np.load(DAVIS_JF / "sequences.npz")


def decode(arrays, case_id, part):
    """Reference mask ``<id>__<part>`` unpacked to bool with the case shape, or None when absent."""
    key = f"{case_id}__{part}"
    if key not in arrays.files:
        return None
    shape = tuple(int(n) for n in arrays[f"{case_id}__shape"])
    return np.unpackbits(arrays[key], count=int(np.prod(shape))).reshape(shape).astype(bool)


@pytest.mark.parametrize("case_id", sorted(PAIRS))
def test_single_frame_cases_match_official(pair_arrays, case_id):
    case = PAIRS[case_id]
    gt, pred, void = (decode(pair_arrays, case_id, part) for part in ("gt", "pred", "void"))
    jaccard, f_measure = region_and_boundary(gt, pred, void)
    assert jaccard.shape == f_measure.shape == ()
    assert float(jaccard) == case["J"]
    assert float(f_measure) == case["F"]
    assert boundary_radius(*gt.shape) == case["diagnostics"]["bound_pix"]
    valid = np.ones(gt.shape, dtype=bool) if void is None else ~void
    assert np.count_nonzero(boundary_map(gt & valid)) == case["diagnostics"]["n_gt_boundary_px"]
    assert np.count_nonzero(boundary_map(pred & valid)) == case["diagnostics"]["n_pred_boundary_px"]


@pytest.mark.parametrize("case_id", sorted(PAIRS))
def test_reference_transcription_matches_official(pair_arrays, case_id):
    """The benchmark baseline computes the official numbers too."""
    case = PAIRS[case_id]
    gt, pred, void = (decode(pair_arrays, case_id, part) for part in ("gt", "pred", "void"))
    assert reference_region_similarity(gt, pred, void) == case["J"]
    assert reference_boundary_f_measure(gt, pred, void) == case["F"]


@pytest.mark.parametrize("case_id", sorted(SEQUENCES))
def test_frame_stacks_match_official_per_frame_values(sequence_arrays, case_id):
    case = SEQUENCES[case_id]
    gt, pred = decode(sequence_arrays, case_id, "gt"), decode(sequence_arrays, case_id, "pred")
    jaccard, f_measure = region_and_boundary(gt, pred)
    assert jaccard.tolist() == case["J_per_frame"]
    assert f_measure.tolist() == case["F_per_frame"]
    assert region_similarity(gt, pred).tolist() == case["J_per_frame"]
    assert boundary_f_measure(gt, pred).tolist() == case["F_per_frame"]


SHAPES = [(1, 1), (1, 10), (10, 1), (2, 2), (3, 64), (5, 63), (7, 65), (9, 128), (11, 129), (37, 53), (48, 200)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("bound_th", [0.008, 0.1, 0, 1, 3, 70])
def test_vectorised_equals_reference_on_random_masks(shape, bound_th):
    """Word boundaries, 1-px images, radius 0, radii beyond one 64-bit word, void pixels, sparse and dense masks."""
    rng = np.random.default_rng(sum(shape) + int(bound_th * 1000))
    height, width = shape
    block = np.zeros(shape, dtype=bool)
    block[height // 3: 2 * height // 3 + 1, width // 4: 3 * width // 4 + 1] = True
    gt = np.stack([rng.random(shape) < 0.5, rng.random(shape) < 0.03, rng.random(shape) < 0.97, block])
    pred = np.stack([rng.random(shape) < 0.5, rng.random(shape) < 0.03, np.roll(gt[2], 1, axis=1),
                     np.roll(block, (1, 2), axis=(0, 1))])
    for void in (None, rng.random(gt.shape) < 0.1):
        jaccard, f_measure = region_and_boundary(gt, pred, void, bound_th)
        for t in range(len(gt)):
            frame_void = None if void is None else void[t]
            assert jaccard[t] == reference_region_similarity(gt[t], pred[t], frame_void)
            assert f_measure[t] == reference_boundary_f_measure(gt[t], pred[t], frame_void, bound_th)
    assert np.array_equal(boundary_map(gt), np.stack([reference_boundary_map(mask) for mask in gt]))


def test_prediction_equal_to_ground_truth_scores_one(pair_arrays):
    gt = decode(pair_arrays, "r480_blob_vs_blob", "gt")
    empty = np.zeros_like(gt)
    jaccard, f_measure = region_and_boundary(np.stack([gt, empty]), np.stack([gt.copy(), empty]))
    assert jaccard.tolist() == [1.0, 1.0]
    assert f_measure.tolist() == [1.0, 1.0]


def test_empty_prediction_against_object_scores_zero(pair_arrays):
    gt = decode(pair_arrays, "r480_blob_vs_blob", "gt")
    jaccard, f_measure = region_and_boundary(gt, np.zeros_like(gt))
    assert float(jaccard) == 0.0
    assert float(f_measure) == 0.0


def test_any_nonzero_value_is_foreground_and_leading_dims_are_kept(sequence_arrays):
    gt = decode(sequence_arrays, "seq37x53_T4", "gt")
    pred = decode(sequence_arrays, "seq37x53_T4", "pred")
    expected_j, expected_f = region_and_boundary(gt, pred)
    jaccard, f_measure = region_and_boundary((gt * 2).astype(np.uint8).reshape(2, 2, *gt.shape[1:]),
                                             (pred * 255).astype(np.uint8).reshape(2, 2, *gt.shape[1:]))
    assert jaccard.shape == f_measure.shape == (2, 2)
    assert jaccard.ravel().tolist() == expected_j.tolist()
    assert f_measure.ravel().tolist() == expected_f.tolist()


def test_disk_kernel_is_the_euclidean_disk():
    kernel = disk_kernel(8)
    assert kernel.shape == (17, 17)
    rows, cols = np.nonzero(kernel)
    assert np.all((rows - 8) ** 2 + (cols - 8) ** 2 <= 64)
    assert np.count_nonzero(kernel) == sum(1 for dy in range(-8, 9) for dx in range(-8, 9) if dx * dx + dy * dy <= 64)


def test_bad_input_is_reported():
    masks = np.zeros((2, 5, 6), dtype=bool)
    with pytest.raises(ValueError, match="shapes differ"):
        region_and_boundary(masks, masks[:, :, :5])
    with pytest.raises(ValueError, match="void"):
        region_and_boundary(masks, masks, masks[0])
    with pytest.raises(ValueError, match="H, W"):
        region_and_boundary(masks[0, 0], masks[0, 0])
    with pytest.raises(ValueError, match="integer"):
        boundary_radius(480, 854, 2.5)
