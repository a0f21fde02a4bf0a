"""Fusion operators on one video: small functions, each with its rule in its docstring.

Shapes: a mask stack is [T, H, W]; probabilities are float32 in [0, 1]; binary masks are bool.
"""
import math
from typing import Dict, List, Optional, Sequence

import numpy as np

from rvos.ensemble.sources import sigmoid

KEY_FRAME_RULES = ("argmax", "product", "mean")
GROUPINGS = ("none", "consecutive_pairs", "meta_objects")
VOTE_THRESHOLDS = ("half", "majority")
IOU_SUPPORTS = ("support", "threshold")


def binarise(probs: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """bool [T, H, W]: ``probs > threshold`` (strict, so a probability of exactly 0.5, a logit of exactly 0, is
    background; for a logit store this is bit-identical to ``sigmoid(x) > 0.5`` in float32)."""
    return probs > threshold


def sigmoid_quirk_binarise(probs: np.ndarray, kind: str) -> np.ndarray:
    """bool [T, H, W] by the I23 odd-expression quirk: ``sigmoid(stored values) > 0.5`` whatever the store holds.

    For a logit store this is the store's own mask. For a probability store it is ``sigmoid(p) > 0.5``, i.e.
    ``p > 0`` (up to float32: p <= ~6e-8 still rounds to 0.5 and is background).
    """
    if kind == "probabilities":
        return sigmoid(probs) > 0.5
    return binarise(probs)


def select_key_frame(scores: Sequence[np.ndarray], rule: str) -> int:
    """Index of the key frame from per-frame scores of one or more sources ([T] each).

    - "argmax": argmax of the first (only) source's scores;
    - "product": argmax over t of the float64 product s0[t] * s1[t] * ... (left to right);
    - "mean": argmax over t of the mean of the sources' scores.
    Ties go to the first maximum (``np.argmax``).
    """
    if rule not in KEY_FRAME_RULES:
        raise ValueError(f"key-frame rule {rule!r} is not one of {KEY_FRAME_RULES}")
    arrays = [np.asarray(s, dtype=np.float64) for s in scores]
    if rule == "argmax":
        combined = arrays[0]
    elif rule == "product":
        combined = arrays[0]
        for other in arrays[1:]:
            combined = combined * other
    else:
        combined = np.mean(np.stack(arrays), axis=0)
    return int(np.argmax(combined))


def group_expressions(exp_ids: Sequence[str], grouping: str,
                      meta_expressions: Optional[Dict[str, dict]] = None) -> List[List[str]]:
    """Expression groups of one video, in meta order.

    - "none": every expression alone;
    - "consecutive_pairs": (0,1), (2,3), ... by POSITION in meta order, the last one alone when the count is odd
      (the I23 Ref-YouTube-VOS heuristic: it assumes consecutive expressions describe the same object);
    - "meta_objects": expressions with the same object ids (``obj_id`` / ``anno_id`` of the meta, a MeViS
      expression may list several) form one group, in order of first appearance.
    """
    exp_ids = list(exp_ids)
    if grouping == "none":
        return [[e] for e in exp_ids]
    if grouping == "consecutive_pairs":
        return [exp_ids[i:i + 2] for i in range(0, len(exp_ids), 2)]
    if grouping == "meta_objects":
        groups: Dict[tuple, List[str]] = {}
        for exp_id in exp_ids:
            entry = (meta_expressions or {}).get(exp_id, {})
            objects = entry.get("obj_id", entry.get("anno_id"))
            if objects is None:
                raise KeyError(f"expression {exp_id} has no obj_id / anno_id in the meta (grouping meta_objects)")
            key = tuple(sorted(str(o) for o in (objects if isinstance(objects, list) else [objects])))
            groups.setdefault(key, []).append(exp_id)
        return list(groups.values())
    raise ValueError(f"grouping {grouping!r} is not one of {GROUPINGS}")


def min_votes_for(count: int, rule) -> int:
    """Votes needed out of ``count``: an int as given; "half" = ceil(count / 2), so a tie goes to foreground;
    "majority" = count // 2 + 1, so a tie goes to background."""
    if isinstance(rule, int) and not isinstance(rule, bool):
        return rule
    if rule == "half":
        return math.ceil(count / 2)
    if rule == "majority":
        return count // 2 + 1
    raise ValueError(f"vote threshold {rule!r} is neither an int nor one of {VOTE_THRESHOLDS}")


def vote(masks: Sequence[np.ndarray], min_votes) -> np.ndarray:
    """bool [T, H, W]: foreground iff at least ``min_votes_for(len(masks), min_votes)`` of the binary masks
    ([T, H, W] each) are foreground (``>=``)."""
    votes = np.sum(np.stack(masks).astype(np.int32), axis=0)
    return votes >= min_votes_for(len(masks), min_votes)


def iou(a: np.ndarray, b: np.ndarray, support: str = "support") -> float:
    """IoU of two [H, W] maps as a Python float (|a & b| / |a | b|, an empty union gives 1.0).

    - "support": over the maps' supports (value != 0): what the I23 ``db_eval_iou`` does when given probabilities
      (its ``astype(bool)`` cast), the primary ``util.jaccard`` shim of the reference;
    - "threshold": over the ``> 0.5`` masks (the alternative shim).
    """
    if support == "support":
        a, b = a != 0, b != 0
    elif support == "threshold":
        a, b = a > 0.5, b > 0.5
    else:
        raise ValueError(f"IoU support {support!r} is not one of {IOU_SUPPORTS}")
    union = np.sum(a | b)
    if union == 0:
        return 1.0
    return float(np.sum(a & b) / union)


def iou_gated_average(base: np.ndarray, others: Sequence[np.ndarray], gate: float,
                      support: str = "support", sequential: bool = True) -> np.ndarray:
    """float32 [H, W] IoU-gated soft average of one frame's probability maps ([H, W] each).

    sequential=True (I23 ``test_fusion``): for each other map in turn, if IoU(current, other) > gate (strict),
    current = (current + other) / 2, the IoU taken with the possibly already averaged current map; with two others
    that both pass, the weights are 1/4, 1/4, 1/2.
    sequential=False (the corrected rule): the mean of the base map and every other map whose IoU with the base
    map is > gate.
    """
    current = base.astype(np.float32)
    if sequential:
        for other in others:
            if iou(current, other, support) > gate:
                current = (current + other) / np.float32(2)
        return current
    passing = [o for o in others if iou(base, o, support) > gate]
    return np.mean(np.stack([current] + [o.astype(np.float32) for o in passing]), axis=0).astype(np.float32)
