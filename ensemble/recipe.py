"""Recipe files: named sources, chained rounds, the final output. Validated whole before any work is done.

A recipe (YAML)::

    root: ../data            # folder the paths below are relative to (relative to the recipe file); optional
    meta: meta_expressions/test/meta_expressions.json
    frames: JPEGImages       # optional: RGB frames (propagation rounds, submission check)
    output: ensemble_out     # relative to the working directory: Annotations/, submission.zip, key_frames.json
    sources:
      soc: {type: pth, path: model_pth/soc.pth, values: logits, on_missing: error}
    rounds:
      - name: first
        op: vote
        inputs: [soc, mutr, rf]
        ...
    final: first             # the round written as the output (default: the last)

Every mistake (unknown key, unknown source or round, unknown operator, bad option value) is a ``RecipeError``
whose message names the recipe file and the line.
"""
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import yaml

from rvos.ensemble.operators import GROUPINGS, IOU_SUPPORTS, KEY_FRAME_RULES, VOTE_THRESHOLDS
from rvos.ensemble.sources import SOURCE_TYPES, VALUE_KINDS

OPERATORS = ("vote", "fuse", "keyframe", "propagate")
ON_MISSING = ("error", "abstain")
UNPAIRED_RULES = ("vote", "source")
UNPAIRED_BINARISE = ("own", "sigmoid_quirk")

TOP_KEYS = {"root", "meta", "frames", "output", "sources", "rounds", "final", "description"}
SOURCE_KEYS = {"type", "path", "values", "on_missing"}
ROUND_KEYS = {
    "vote": {"name", "op", "inputs", "grouping", "min_votes", "unpaired", "key_frame"},
    "fuse": {"name", "op", "inputs", "gate", "iou_support", "sequential", "key_frame"},
    "keyframe": {"name", "op", "inputs", "key_frame"},
    "propagate": {"name", "op", "inputs", "propagator", "tta", "key_frame"},
}
KEY_FRAME_KEYS = {"rule", "inputs", "from"}
UNPAIRED_KEYS = {"rule", "source", "min_votes", "binarise"}


class RecipeError(ValueError):
    """A recipe mistake; the message names the file and line."""


class _LineLoader(yaml.SafeLoader):
    """SafeLoader whose mappings are ``LineDict``s that remember each key's line."""


class LineDict(dict):
    """A YAML mapping with ``line`` (1-based, its own) and ``lines`` (key -> 1-based line)."""
    line: int = 0
    lines: Dict[str, int]


def _construct_mapping(loader, node):
    mapping = LineDict(loader.construct_mapping(node, deep=True))
    mapping.line = node.start_mark.line + 1
    mapping.lines = {key.value: key.start_mark.line + 1 for key, _ in node.value}
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


@dataclass
class KeyFrameSpec:
    rule: str = "argmax"
    inputs: List[str] = field(default_factory=list)
    from_round: Optional[str] = None


@dataclass
class RoundSpec:
    name: str
    op: str
    inputs: List[str]
    options: Dict[str, Any]
    key_frame: Optional[KeyFrameSpec]
    line: int


@dataclass
class Recipe:
    path: Path
    root: Path
    meta: Path
    frames: Optional[Path]
    output: Path
    sources: Dict[str, dict]
    rounds: List[RoundSpec]
    final: str


class _Checker:
    def __init__(self, path: Path):
        self.path = path

    def fail(self, line: int, message: str):
        raise RecipeError(f"{self.path}:{line}: {message}")

    def keys(self, mapping: LineDict, allowed, what: str):
        for key in mapping:
            if key not in allowed:
                self.fail(mapping.lines.get(key, mapping.line),
                          f"unknown key {key!r} in {what} (allowed: {', '.join(sorted(allowed))})")

    def mapping(self, value, line: int, what: str) -> LineDict:
        if not isinstance(value, LineDict):
            self.fail(line, f"{what} must be a mapping, got {type(value).__name__}")
        return value

    def unique(self, items, line: int, what: str):
        repeated = sorted({str(item) for item in items if items.count(item) > 1})
        if repeated:
            self.fail(line, f"{what} {', '.join(repeated)} is listed more than once (a source would count twice)")

    def min_votes(self, mapping: LineDict, key: str, default, most: Optional[int]):
        """A vote threshold: "half", "majority" or an int from 1 to ``most`` (the votes a group can have; None when
        the grouping bounds it only per video)."""
        value = mapping.get(key, default)
        line = mapping.lines.get(key, mapping.line)
        if value in VOTE_THRESHOLDS:
            return value
        if not isinstance(value, int) or isinstance(value, bool):
            self.fail(line, f"{key} {value!r} is neither an int nor one of {', '.join(VOTE_THRESHOLDS)}")
        if value < 1 or (most is not None and value > most):
            self.fail(line, f"{key} {value} is outside 1..{most if most is not None else 'the votes of a group'}: "
                            f"every pixel would be {'foreground' if value < 1 else 'background'}")
        return value

    def choice(self, mapping: LineDict, key: str, choices, default):
        value = mapping.get(key, default)
        if value not in choices:
            self.fail(mapping.lines.get(key, mapping.line), f"{key} {value!r} is not one of {', '.join(choices)}")
        return value


def load_recipe(path: Path, root: Optional[Path] = None, output: Optional[Path] = None) -> Recipe:
    """Parse and validate a recipe file (``root`` / ``output`` override the recipe's own)."""
    path = Path(path)
    check = _Checker(path)
    try:
        data = yaml.load(path.read_text(), Loader=_LineLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        raise RecipeError(f"{path}:{mark.line + 1 if mark else 0}: not valid YAML: {err}") from err
    data = check.mapping(data, 1, "the recipe")
    check.keys(data, TOP_KEYS, "the recipe")
    for key in ("meta", "sources", "rounds"):
        if key not in data:
            check.fail(data.line, f"missing key {key!r}")
    root = Path(root) if root is not None else path.parent / str(data.get("root", "."))
    sources = _sources(check, data)
    rounds = _rounds(check, data, sources)
    names = [r.name for r in rounds]
    final = data.get("final", names[-1])
    if final not in names:
        check.fail(data.lines.get("final", data.line), f"final {final!r} is not a round ({', '.join(names)})")
    meta = root / str(data["meta"])
    if not meta.is_file():
        check.fail(data.lines["meta"], f"meta file {meta} does not exist")
    frames = root / str(data["frames"]) if "frames" in data else None
    if frames is not None and not frames.is_dir():
        check.fail(data.lines["frames"], f"frames folder {frames} does not exist")
    if output is None:
        output = Path(str(data.get("output", "ensemble_output")))
    for name, spec in sources.items():
        if not (root / str(spec["path"])).exists():
            check.fail(spec.line, f"source {name}: {root / str(spec['path'])} does not exist")
    return Recipe(path, root, meta, frames, Path(output), sources, rounds, final)


def _sources(check: _Checker, data: LineDict) -> Dict[str, LineDict]:
    sources = check.mapping(data["sources"], data.lines["sources"], "sources")
    for name, spec in sources.items():
        spec = check.mapping(spec, sources.lines[name], f"source {name}")
        check.keys(spec, SOURCE_KEYS, f"source {name}")
        if "path" not in spec:
            check.fail(spec.line, f"source {name} has no path")
        check.choice(spec, "type", SOURCE_TYPES, None)
        check.choice(spec, "values", VALUE_KINDS, "logits")
        check.choice(spec, "on_missing", ON_MISSING, "error")
    return sources


def _rounds(check: _Checker, data: LineDict, sources: Dict[str, LineDict]) -> List[RoundSpec]:
    rounds_data = data["rounds"]
    if not isinstance(rounds_data, list) or not rounds_data:
        check.fail(data.lines["rounds"], "rounds must be a non-empty list")
    known = set(sources)
    rounds: List[RoundSpec] = []
    for index, spec in enumerate(rounds_data):
        spec = check.mapping(spec, data.lines["rounds"], f"round {index}")
        op = spec.get("op")
        if op not in OPERATORS:
            check.fail(spec.lines.get("op", spec.line), f"unknown operator {op!r} (one of {', '.join(OPERATORS)})")
        check.keys(spec, ROUND_KEYS[op], f"{op} round")
        name = spec.get("name", f"round{index}")
        if name in known:
            check.fail(spec.lines.get("name", spec.line), f"round name {name!r} is already a source or round")
        inputs = spec.get("inputs")
        if not isinstance(inputs, list) or not inputs:
            check.fail(spec.lines.get("inputs", spec.line), f"round {name}: inputs must be a non-empty list")
        for item in inputs:
            if item not in known:
                check.fail(spec.lines["inputs"], f"round {name}: unknown input {item!r} "
                           f"(sources and earlier rounds: {', '.join(sorted(known))})")
        check.unique(inputs, spec.lines["inputs"], f"round {name}: input")
        options = _options(check, spec, op, name, inputs, known)
        key_frame = _key_frame(check, spec, name, known, [r.name for r in rounds])
        rounds.append(RoundSpec(name, op, list(inputs), options, key_frame, spec.line))
        known.add(name)
    return rounds


def _options(check: _Checker, spec: LineDict, op: str, name: str, inputs, known) -> Dict[str, Any]:
    line = lambda key: spec.lines.get(key, spec.line)  # noqa: E731
    if op == "vote":
        grouping = check.choice(spec, "grouping", GROUPINGS, "none")
        group_size = {"none": 1, "consecutive_pairs": 2}.get(grouping)  # meta_objects: any size
        min_votes = check.min_votes(spec, "min_votes", "majority", group_size and group_size * len(inputs))
        unpaired = check.mapping(spec.get("unpaired", LineDict()), line("unpaired"), "unpaired")
        check.keys(unpaired, UNPAIRED_KEYS, "unpaired")
        rule = check.choice(unpaired, "rule", UNPAIRED_RULES, "vote")
        source = unpaired.get("source", inputs[0])
        if rule == "source" and source not in inputs:
            check.fail(unpaired.lines.get("source", unpaired.line), f"unpaired source {source!r} is not an input")
        binarise = check.choice(unpaired, "binarise", UNPAIRED_BINARISE, "own")
        if "min_votes" in unpaired:
            unpaired_votes = check.min_votes(unpaired, "min_votes", None, len(inputs))
        else:
            unpaired_votes = min_votes
            if grouping != "none" and isinstance(min_votes, int) and min_votes > len(inputs):
                check.fail(line("min_votes"), f"min_votes {min_votes} exceeds the {len(inputs)} votes of an unpaired "
                                              "expression: give unpaired: {min_votes: ...}")
        return {"grouping": grouping, "min_votes": min_votes,
                "unpaired": {"rule": rule, "source": source, "binarise": binarise, "min_votes": unpaired_votes}}
    if op == "fuse":
        gate = spec.get("gate", 0.9)
        if not isinstance(gate, (int, float)) or not 0 <= gate <= 1:
            check.fail(line("gate"), f"gate {gate!r} must be a number in [0, 1]")
        sequential = spec.get("sequential", False)
        if not isinstance(sequential, bool):
            check.fail(line("sequential"), "sequential must be true or false")
        return {"gate": float(gate), "support": check.choice(spec, "iou_support", IOU_SUPPORTS, "threshold"),
                "sequential": sequential}
    if op == "propagate":
        if len(inputs) != 1:
            check.fail(line("inputs"), f"round {name}: a propagate round takes one input")
        propagator = check.mapping(spec.get("propagator"), line("propagator"), "propagator")
        try:
            from rvos.ensemble.propagate import PROPAGATOR_TYPES
        except ImportError as err:
            check.fail(line("propagator"), f"propagators are not available: {err}")
        if propagator.get("type") not in PROPAGATOR_TYPES:
            check.fail(propagator.lines.get("type", propagator.line),
                       f"unknown propagator type {propagator.get('type')!r} (one of {', '.join(PROPAGATOR_TYPES)})")
        tta = spec.get("tta")
        if tta is not None:
            from rvos.ensemble.propagate.augment import TTA_OPTIONS
            tta = check.mapping(tta, line("tta"), "tta")
            check.keys(tta, set(TTA_OPTIONS), "tta")
            tta = dict(tta)
        return {"propagator": dict(propagator), "tta": tta}
    return {}


def _key_frame(check: _Checker, spec: LineDict, name: str, known, earlier_rounds) -> Optional[KeyFrameSpec]:
    if "key_frame" not in spec:
        if spec["op"] in ("keyframe", "propagate", "fuse"):
            check.fail(spec.line, f"round {name}: a {spec['op']} round needs key_frame")
        return None
    entry = check.mapping(spec["key_frame"], spec.lines["key_frame"], "key_frame")
    check.keys(entry, KEY_FRAME_KEYS, "key_frame")
    if "from" in entry:
        if entry["from"] not in earlier_rounds:
            check.fail(entry.lines["from"], f"key_frame from {entry['from']!r} is not an earlier round")
        return KeyFrameSpec(from_round=entry["from"])
    rule = check.choice(entry, "rule", KEY_FRAME_RULES, "argmax")
    inputs = entry.get("inputs", [])
    if not isinstance(inputs, list) or not inputs:
        check.fail(entry.lines.get("inputs", entry.line), "key_frame inputs must be a non-empty list")
    for item in inputs:
        if item not in known:
            check.fail(entry.lines["inputs"], f"key_frame input {item!r} is not a source or earlier round")
    check.unique(inputs, entry.lines["inputs"], "key_frame input")
    if rule == "argmax" and len(inputs) != 1:
        check.fail(entry.lines["inputs"], "key_frame rule argmax takes one input")
    return KeyFrameSpec(rule, list(inputs))
