"""Per-expression scores with their text and kind, for reports.

The evaluators return ``per_expression`` as ``{key: [J, F]}`` with a protocol-specific key (``<video>/<exp_id>``
for ground-truth folders, ``<video>_<exp_id>`` for MeViS); ``expression_scores`` joins them with the
``meta_expressions.json`` (the text) and, where the dataset records one, the expression's kind (the synthetic
world's ``synthetic_meta.json`` sidecar: appearance / motion / position / multi).
"""
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Tuple

from rvos.datasets.synthetic import SIDECAR_NAME
from rvos.evaluation.ytvos import summarise

logger = logging.getLogger(__name__)

# How each protocol names an expression in ``per_expression``.
EXPRESSION_KEYS: Dict[str, Callable[[str, str], str]] = {
    "ytvos": lambda video, exp_id: f"{video}/{exp_id}",
    "mevis": lambda video, exp_id: f"{video}_{exp_id}",
}
# How far up from a data path the sidecar is looked for (<root>/_synthetic_gt/<split>/Annotations is 3 levels).
_SIDECAR_SEARCH_DEPTH = 4


@dataclass(frozen=True)
class ExpressionScore:
    """One scored expression: mean J and F over its frames, its text and (when known) its kind."""

    video: str
    exp_id: str
    text: str
    jaccard: float
    boundary: float
    kind: Optional[str] = None

    @property
    def jf(self) -> float:
        return (self.jaccard + self.boundary) / 2

    @property
    def key(self) -> str:
        return f"{self.video}/{self.exp_id}"


def expression_scores(per_expression: Mapping[str, List[float]], meta_path: Path, protocol: str,
                      kinds: Optional[Mapping[Tuple[str, str], str]] = None) -> List[ExpressionScore]:
    """The scored expressions of ``per_expression`` in the order of ``meta_path`` (a meta_expressions.json).

    ``kinds`` maps (video, exp_id) to a kind. Expressions of the meta without a score (no ground truth) are left
    out; a scored key missing from the meta is an error naming it.
    """
    key_of = EXPRESSION_KEYS[protocol]
    videos = json.loads(Path(meta_path).read_text())["videos"]
    scores, seen = [], set()
    for video, entry in videos.items():
        for exp_id, expression in entry["expressions"].items():
            key = key_of(video, exp_id)
            if key not in per_expression:
                continue
            seen.add(key)
            jaccard, boundary = per_expression[key]
            scores.append(ExpressionScore(video, exp_id, expression.get("exp", ""), float(jaccard), float(boundary),
                                          (kinds or {}).get((video, exp_id))))
    unknown = sorted(set(per_expression) - seen)
    if unknown:
        raise ValueError(f"{meta_path}: scored expressions not in this meta: {', '.join(unknown[:5])}")
    return scores


def find_sidecar(paths: Iterable[Optional[Path]]) -> Optional[Path]:
    """The synthetic world's sidecar in one of ``paths`` or their parents (a few levels up), if any."""
    for path in paths:
        if path is None:
            continue
        folder = Path(path).resolve()
        for candidate in [folder, *folder.parents][:_SIDECAR_SEARCH_DEPTH + 1]:
            if (candidate / SIDECAR_NAME).is_file():
                return candidate / SIDECAR_NAME
    return None


def load_expression_kinds(path: Path) -> Dict[Tuple[str, str], str]:
    """(video, exp_id) -> kind from a file listing ``expressions: [{"video", "exp_id", "kind"}, ...]`` (the
    synthetic sidecar's schema)."""
    path = Path(path)
    try:
        records = json.loads(path.read_text())["expressions"]
        kinds = {(str(record["video"]), str(record["exp_id"])): str(record["kind"]) for record in records}
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path}: cannot read expression kinds (expected 'expressions': [{{'video', 'exp_id', "
                         f"'kind'}}, ...]): {err}") from err
    logger.info("expression kinds from %s", path)
    return kinds


def summarise_scores(scores: Iterable[ExpressionScore]) -> Dict[str, float]:
    """{"J&F", "J", "F", "n_expressions"}: plain means over (at least one) expressions."""
    results = summarise({score.key: [score.jaccard, score.boundary] for score in scores})
    return {name: results[name] for name in ("J&F", "J", "F", "n_expressions")}


def scores_by_kind(scores: Iterable[ExpressionScore]) -> Dict[str, Dict[str, float]]:
    """{kind: summary} over the expressions whose kind is known, kinds in order of first appearance."""
    groups: Dict[str, List[ExpressionScore]] = {}
    for score in scores:
        if score.kind is not None:
            groups.setdefault(score.kind, []).append(score)
    return {kind: summarise_scores(group) for kind, group in groups.items()}
