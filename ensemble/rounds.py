"""One video through a recipe's rounds: sources loaded for that video only, each round's output kept as a source of
the later rounds, key frames and abstentions recorded."""
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
from PIL import Image

from rvos.ensemble.operators import (binarise, group_expressions, iou_gated_average, select_key_frame,
                                     sigmoid_quirk_binarise, vote)
from rvos.ensemble.recipe import Recipe, RecipeError, RoundSpec
from rvos.ensemble.sources import ExpressionPrediction, MissingPrediction, Source, SourceError, build_source

logger = logging.getLogger(__name__)

Predictions = Dict[str, ExpressionPrediction]


@dataclass
class VideoResult:
    """The final round's masks (bool [T, H, W] per expression), key frames per round and abstention notes."""
    masks: Dict[str, np.ndarray]
    key_frames: Dict[str, Dict[str, int]]
    abstained: List[str] = field(default_factory=list)


class VideoFusion:
    """Runs the rounds of ``recipe`` on one video at a time (sources and propagators built once)."""

    def __init__(self, recipe: Recipe):
        self.recipe = recipe
        self.sources: Dict[str, Source] = {name: build_source(name, spec, recipe.root)
                                           for name, spec in recipe.sources.items()}
        self.propagators = {spec.name: _build_propagator(recipe, spec) for spec in recipe.rounds
                            if spec.op == "propagate"}

    def _source(self, name: str, video: str, meta_video: dict, notes: List[str]) -> Predictions:
        try:
            loaded = self.sources[name].load_video(video, meta_video)
        except MissingPrediction as err:
            if self.recipe.sources[name].get("on_missing", "error") != "abstain":
                raise
            notes.append(f"{name} abstains on video {video}: {err}")
            return {}
        if self.recipe.sources[name].get("on_missing", "error") == "abstain":
            for exp_id in meta_video["expressions"]:
                if exp_id not in loaded:
                    notes.append(f"{name} abstains on {video}/{exp_id}: no prediction")
        else:
            missing = [e for e in meta_video["expressions"] if e not in loaded]
            if missing:
                raise MissingPrediction(f"source {name} ({self.sources[name].path}) lacks expressions {missing} of "
                                        f"video {video}")
        return loaded

    def run(self, video: str, meta_video: dict) -> VideoResult:
        notes: List[str] = []
        available: Dict[str, Predictions] = {}
        key_frames: Dict[str, Dict[str, int]] = {}
        exp_ids = list(meta_video["expressions"])
        needed = {n for r in self.recipe.rounds for n in r.inputs + (r.key_frame.inputs if r.key_frame else [])}
        for name in self.recipe.sources:
            if name in needed:
                available[name] = self._source(name, video, meta_video, notes)
        self._check_sizes(available, video)
        for spec in self.recipe.rounds:
            inputs = {name: available[name] for name in spec.inputs}
            if spec.key_frame is not None:
                key_frames[spec.name] = self._key_frames(spec, available, key_frames, exp_ids, video)
            available[spec.name] = self._round(spec, inputs, key_frames.get(spec.name), video, meta_video)
            if spec.name == self.recipe.final:
                break
        final = available[self.recipe.final]
        return VideoResult({e: binarise(final[e].probs) for e in exp_ids}, key_frames, notes)

    def _check_sizes(self, loaded: Dict[str, Predictions], video: str) -> None:
        """Every source's masks of the video have one [T, H, W] shape (a source at another resolution is an error
        naming both files)."""
        first = None
        for name, predictions in loaded.items():
            for exp_id, entry in predictions.items():
                where = f"source {name} ({self.sources[name].entry_path(video, exp_id)})"
                if first is None:
                    first = (where, entry.probs.shape)
                elif entry.probs.shape != first[1]:
                    raise SourceError(f"video {video}: {where} has masks of shape {list(entry.probs.shape)} "
                                      f"([T, H, W]), {first[0]} has {list(first[1])}")

    def _key_frames(self, spec: RoundSpec, available, key_frames, exp_ids, video) -> Dict[str, int]:
        if spec.key_frame.from_round is not None:
            return key_frames[spec.key_frame.from_round]
        out = {}
        for exp_id in exp_ids:
            scores = []
            for name in spec.key_frame.inputs:
                entry = available[name].get(exp_id)
                if entry is None:
                    continue
                if entry.scores is None:
                    raise MissingPrediction(f"round {spec.name}: key-frame input {name} has no per-frame scores")
                scores.append(entry.scores)
            if not scores or (spec.key_frame.rule == "argmax" and len(scores) != len(spec.key_frame.inputs)):
                raise MissingPrediction(f"round {spec.name}: no scores for the key frame of {video}/{exp_id}")
            out[exp_id] = select_key_frame(scores, spec.key_frame.rule)
        return out

    def _round(self, spec: RoundSpec, inputs: Dict[str, Predictions], keys: Optional[Dict[str, int]], video: str,
               meta_video: dict) -> Predictions:
        exp_ids = list(meta_video["expressions"])
        if spec.op == "vote":
            return self._vote(spec, inputs, exp_ids, video, meta_video)
        first = inputs[spec.inputs[0]]
        for exp_id in exp_ids:
            if exp_id not in first:
                raise MissingPrediction(f"round {spec.name}: input {spec.inputs[0]} has no {video}/{exp_id}")
        if spec.op == "keyframe":
            return dict(first)
        if spec.op == "fuse":
            out = {}
            for exp_id in exp_ids:
                base, k = first[exp_id].probs.copy(), keys[exp_id]
                others = [inputs[n][exp_id].probs[k] for n in spec.inputs[1:] if exp_id in inputs[n]]
                base[k] = iou_gated_average(base[k], others, spec.options["gate"], spec.options["support"],
                                            spec.options["sequential"])
                out[exp_id] = ExpressionPrediction(base, first[exp_id].scores, "probabilities")
            return out
        return self._propagate(spec, first, keys, video, meta_video)

    def _vote(self, spec: RoundSpec, inputs, exp_ids, video, meta_video) -> Predictions:
        options, out = spec.options, {}
        for group in group_expressions(exp_ids, options["grouping"], meta_video["expressions"]):
            unpaired = len(group) == 1 and options["grouping"] != "none"
            rule = options["unpaired"]
            if unpaired and rule["rule"] == "source":
                entry = inputs[rule["source"]].get(group[0])
                if entry is None:
                    raise MissingPrediction(f"round {spec.name}: unpaired source {rule['source']} has no "
                                            f"{video}/{group[0]}")
                mask = (sigmoid_quirk_binarise(entry.probs, entry.kind) if rule["binarise"] == "sigmoid_quirk"
                        else binarise(entry.probs))
            else:
                votes = [binarise(inputs[n][e].probs) for n in spec.inputs for e in group if e in inputs[n]]
                if not votes:
                    raise MissingPrediction(f"round {spec.name}: every input abstains on {video}/{group}")
                mask = vote(votes, rule["min_votes"] if unpaired else options["min_votes"])
            for exp_id in group:
                out[exp_id] = ExpressionPrediction(mask.astype(np.float32), None, "binary")
        return out

    def _propagate(self, spec: RoundSpec, first: Predictions, keys, video, meta_video) -> Predictions:
        from rvos.ensemble.propagate import propagate_from_key_frame
        propagator = self.propagators[spec.name]
        frames = load_frames(self.recipe.frames, video, meta_video["frames"])
        out = {}
        for exp_id, entry in first.items():
            k = keys[exp_id]
            text = meta_video["expressions"][exp_id].get("exp") if propagator.needs_text else None
            probs = propagate_from_key_frame(propagator, frames, k, entry.probs[k], entry.probs,
                                             tta=spec.options["tta"], text=text)
            out[exp_id] = ExpressionPrediction(np.asarray(probs, dtype=np.float32), entry.scores, "probabilities")
        return out


def _build_propagator(recipe: Recipe, spec: RoundSpec):
    """The round's propagator, built before any video (a bad option is a RecipeError naming the round's line)."""
    from rvos.ensemble.propagate import build_propagator
    try:
        return build_propagator(spec.options["propagator"])
    except ValueError as err:
        raise RecipeError(f"{recipe.path}:{spec.line}: round {spec.name}: {err}") from err


def load_frames(root: Optional[Path], video: str, names) -> np.ndarray:
    """uint8 [T, H, W, 3] RGB frames ``<root>/<video>/<name>.jpg`` in meta order."""
    if root is None:
        raise MissingPrediction("a propagate round needs the recipe's frames folder")
    frames = []
    for name in names:
        path = Path(root) / video / f"{name}.jpg"
        if not path.is_file():
            raise MissingPrediction(f"frame {path} does not exist")
        with Image.open(path) as image:
            frames.append(np.asarray(image.convert("RGB")))
    return np.stack(frames)
