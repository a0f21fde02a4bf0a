"""Each fusion operator on hand-made masks, for the rule in its docstring."""
import numpy as np
import pytest

from rvos.ensemble.operators import (binarise, group_expressions, iou, iou_gated_average, min_votes_for,
                                     select_key_frame, sigmoid_quirk_binarise, vote)
from rvos.ensemble.sources import sigmoid


def masks(*rows):
    """[1, 1, W] bool masks from 0/1 rows."""
    return [np.array(r, dtype=bool)[None, None] for r in rows]


def test_binarise_is_strict_for_logits_and_probabilities():
    logits = np.array([[[0.0, 1e-3, -1e-3]]], dtype=np.float32)
    assert binarise(sigmoid(logits)).tolist() == [[[False, True, False]]]
    probs = np.array([[[0.5, 0.5001, 0.4999]]], dtype=np.float32)
    assert binarise(probs).tolist() == [[[False, True, False]]]


def test_sigmoid_quirk_makes_any_nonzero_probability_foreground():
    probs = np.array([[[0.0, 0.01, 0.5, 0.9]]], dtype=np.float32)
    assert sigmoid_quirk_binarise(probs, "probabilities").tolist() == [[[False, True, True, True]]]
    assert binarise(probs).tolist() == [[[False, False, False, True]]]
    logit_probs = sigmoid(np.array([[[-1.0, 0.0, 2.0]]], dtype=np.float32))
    assert sigmoid_quirk_binarise(logit_probs, "logits").tolist() == binarise(logit_probs).tolist()


def test_vote_tie_rules():
    six = masks([1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 1, 0])
    assert vote(six, "half")[0, 0].tolist() == [True, True, False, False]   # 5, 3 (tie -> fg), 2, 0
    assert vote(six, "majority")[0, 0].tolist() == [True, False, False, False]
    assert vote(six, 2)[0, 0].tolist() == [True, True, True, False]
    assert [min_votes_for(n, "half") for n in (4, 6, 8)] == [2, 3, 4]
    assert [min_votes_for(n, "majority") for n in (3, 4, 8)] == [2, 3, 5]
    with pytest.raises(ValueError, match="vote threshold"):
        min_votes_for(4, "most")


def test_grouping_consecutive_pairs_unpaired_and_meta():
    assert group_expressions(["0", "1", "2"], "consecutive_pairs") == [["0", "1"], ["2"]]
    assert group_expressions(["0", "1"], "none") == [["0"], ["1"]]
    meta = {"0": {"obj_id": [1]}, "1": {"obj_id": [2, 1]}, "2": {"obj_id": [1]}, "3": {"obj_id": [1, 2]}}
    assert group_expressions(list(meta), "meta_objects", meta) == [["0", "2"], ["1", "3"]]
    with pytest.raises(KeyError, match="expression 0"):
        group_expressions(["0"], "meta_objects", {"0": {"exp": "a cat"}})


def test_key_frame_rules_and_first_maximum():
    a, b = np.array([0.2, 0.9, 0.9, 0.1]), np.array([1.0, 0.5, 0.6, 1.0])
    assert select_key_frame([a], "argmax") == 1                   # tie between 1 and 2: first wins
    assert select_key_frame([a, b], "product") == 2               # 0.2 0.45 0.54 0.1
    assert select_key_frame([a, b], "mean") == 2                  # 0.6 0.7 0.75 0.55
    assert select_key_frame([np.zeros(3)], "argmax") == 0


def test_iou_supports_and_empty_union():
    a = np.array([[0.0, 0.2, 0.8, 0.9]], dtype=np.float32)
    b = np.array([[0.0, 0.0, 0.7, 0.3]], dtype=np.float32)
    assert iou(a, b, "support") == pytest.approx(2 / 3)
    assert iou(a, b, "threshold") == pytest.approx(1 / 2)
    assert iou(np.zeros((2, 2)), np.zeros((2, 2))) == 1.0


def gate_maps(inter: int, union: int):
    """Two [1, union] probability maps whose supports have IoU inter / union."""
    a = np.zeros((1, union), dtype=np.float32)
    b = np.zeros((1, union), dtype=np.float32)
    a[0, :inter + (union - inter) // 2] = 0.8
    b[0, :inter] = 0.4
    b[0, inter + (union - inter) // 2:] = 0.6
    return a, b


def test_iou_gate_just_above_and_at_the_threshold():
    at_a, at_b = gate_maps(9, 10)            # IoU exactly 0.9: strict gate, no averaging
    np.testing.assert_array_equal(iou_gated_average(at_a, [at_b], 0.9), at_a)
    above_a, above_b = gate_maps(91, 100)    # IoU 0.91
    np.testing.assert_allclose(iou_gated_average(above_a, [above_b], 0.9), (above_a + above_b) / 2,
                               rtol=1e-4, atol=1e-4)


def test_iou_gate_sequential_weights_vs_mean():
    p0 = np.full((1, 4), 0.8, dtype=np.float32)
    p1 = np.full((1, 4), 0.4, dtype=np.float32)
    p2 = np.full((1, 4), 0.2, dtype=np.float32)
    np.testing.assert_allclose(iou_gated_average(p0, [p1, p2], 0.9, sequential=True), 0.8 / 4 + 0.4 / 4 + 0.2 / 2,
                               rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(iou_gated_average(p0, [p1, p2], 0.9, sequential=False), (0.8 + 0.4 + 0.2) / 3,
                               rtol=1e-4, atol=1e-4)
    p3 = np.array([[0.8, 0.0, 0.0, 0.0]], dtype=np.float32)   # IoU 1/4 with p0: not averaged
    np.testing.assert_array_equal(iou_gated_average(p0, [p3], 0.9), p0)
