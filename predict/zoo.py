"""The model zoo as data (``configs/zoo.yaml``, its schema in the file's header) and what a checkpoint is.

``load_zoo`` reads and checks the file. ``identify`` reads a checkpoint's names, shapes and recorded options
without its weights (``models.checkpoint.checkpoint_layout``) and compares them with the architecture of every zoo
entry's config and with the architecture its own recorded options describe, each built on the meta device (no
memory, no weights): the entries it fits exactly (same names and shapes), those its recorded options rule out
(TFVOS has exactly ReferFormer's names and shapes; the ``ngpu`` default its ``args`` record tells them apart), or,
for an unknown checkpoint, the closest architecture and a table of what differs. A variant not built here is
recognised from the zoo's data alone (``same_layout_as``, ``key_prefixes``).
"""
import argparse
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
import yaml

from rvos import opts
from rvos.models import build_model
from rvos.models.checkpoint import (CheckpointLayout, architecture_options, checkpoint_layout, compare_shapes,
                                    infer_model_name, mismatch_report, normalise_state_dict)
from rvos.models.variants import MODEL_NAMES
from rvos.predict.model import EXTRA_ARCHITECTURE_OPTIONS
from rvos.predict.options import options_to_argv

CHECKOUT = Path(__file__).resolve().parents[1]
ZOO_FILE = CHECKOUT / "configs" / "zoo.yaml"
FORMAT_VERSION = 1
BENCHMARKS = {
    "ref_youtube_vos_valid": ("jf", "j", "f"),
    "ref_youtube_vos_valid_cfbi": ("jf", "j", "f"),
    "ref_davis17_valid": ("jf", "j", "f"),
    "mevis_valid_u": ("jf", "j", "f"),
    "mevis_valid": ("jf", "j", "f"),
    "a2d_sentences_test": ("oiou", "miou", "map"),
    "jhmdb_sentences": ("oiou", "miou", "map"),
    "refcoco": ("rec_precision_at_0.5", "ris_oiou", "oiou"),
    "refcoco+": ("rec_precision_at_0.5", "ris_oiou", "oiou"),
    "refcocog": ("rec_precision_at_0.5", "ris_oiou", "oiou"),
}
ENTRY_FIELDS = {"id": True, "title": True, "variant": True, "backbone": True, "training_data": True, "config": True,
                "options": False, "inference": False, "file": True, "published": True, "recorded_options": False,
                "paper": True, "note": False}
VARIANT_FIELDS = ("title", "repository", "recorded_options", "same_layout_as", "key_prefixes", "note")
# Options that say where files are or how to run, never what the parameters are: not part of an architecture.
NOT_ARCHITECTURE = ("text_encoder",)


class ZooError(ValueError):
    """The zoo file is malformed (the message names the file and the entry)."""


@dataclass(frozen=True)
class VariantInfo:
    """A ``variants:`` item of the zoo (see the file's header)."""

    name: str
    title: str = ""
    repository: str = ""
    recorded_options: Mapping[str, Any] = field(default_factory=dict)
    same_layout_as: Optional[str] = None
    key_prefixes: Tuple[str, ...] = ()
    note: str = ""

    @property
    def built(self) -> bool:
        return self.name in MODEL_NAMES

    @property
    def label(self) -> str:
        return self.title or self.name


@dataclass(frozen=True)
class ZooEntry:
    """A ``checkpoints:`` item of the zoo (see the file's header)."""

    id: str
    title: str
    variant: str
    backbone: str
    training_data: Tuple[str, ...]
    config: Optional[str]
    file: Optional[str]
    published: Mapping[str, str]
    paper: Mapping[str, Optional[Mapping[str, float]]]
    options: Mapping[str, Any] = field(default_factory=dict)
    inference: Mapping[str, Any] = field(default_factory=dict)
    recorded_options: Mapping[str, Any] = field(default_factory=dict)
    note: str = ""

    @property
    def built(self) -> bool:
        """Whether this code builds its model (its variant exists and it has a config)."""
        return self.variant in MODEL_NAMES and self.config is not None

    @property
    def config_path(self) -> Optional[Path]:
        return None if self.config is None else CHECKOUT / self.config

    def file_names(self) -> Tuple[str, ...]:
        """The names its checkpoint may have in a folder: the published file name, ``<id>.pth``, ``<id>/``."""
        return tuple(n for n in (self.file, f"{self.id}.pth", self.id) if n)

    def model_args(self, **overrides) -> argparse.Namespace:
        """The options of its model: its config, then its ``options``, then ``overrides`` (e.g. ``text_encoder``);
        no pretrained file is read (``backbone_pretrained`` and ``pretrained_weights`` are dropped)."""
        parser = opts.get_args_parser()
        given = {**self.options, **overrides, "device": "cpu"}
        args = opts.parse_args(["--config", str(self.config_path), *options_to_argv(parser, given)],
                               argparse.ArgumentParser(parents=[parser]))
        args.backbone_pretrained, args.pretrained_weights = None, None
        return args


@dataclass
class Zoo:
    path: Path
    variants: Dict[str, VariantInfo]
    entries: List[ZooEntry]

    def entry(self, entry_id: str) -> ZooEntry:
        for entry in self.entries:
            if entry.id == entry_id:
                return entry
        raise KeyError(f"{self.path}: no entry {entry_id!r}")

    def variant(self, name: str) -> VariantInfo:
        return self.variants.get(name, VariantInfo(name))


def _mapping(value, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ZooError(f"{where} must be a mapping, got {type(value).__name__}")
    return value


def _read_variant(name: str, raw, where: str) -> VariantInfo:
    raw = _mapping(raw, where)
    unknown = sorted(set(raw) - set(VARIANT_FIELDS))
    if unknown:
        raise ZooError(f"{where}: unknown field(s) {', '.join(unknown)} (fields: {', '.join(VARIANT_FIELDS)})")
    return VariantInfo(name, str(raw.get("title", "")), str(raw.get("repository", "")),
                       _mapping(raw.get("recorded_options"), f"{where}.recorded_options"), raw.get("same_layout_as"),
                       tuple(raw.get("key_prefixes") or ()), str(raw.get("note", "")))


def _read_paper(raw, where: str) -> Dict[str, Optional[Dict[str, float]]]:
    paper = {}
    for benchmark, metrics in _mapping(raw, where).items():
        if benchmark not in BENCHMARKS:
            raise ZooError(f"{where}: unknown benchmark {benchmark!r} (known: {', '.join(BENCHMARKS)})")
        if metrics is None:
            paper[benchmark] = None
            continue
        metrics = _mapping(metrics, f"{where}.{benchmark}")
        bad = sorted(set(metrics) - set(BENCHMARKS[benchmark]))
        if bad:
            raise ZooError(f"{where}.{benchmark}: unknown metric(s) {', '.join(bad)} (known: "
                           f"{', '.join(BENCHMARKS[benchmark])})")
        if not all(isinstance(v, (int, float)) for v in metrics.values()):
            raise ZooError(f"{where}.{benchmark}: numbers must be percentages, got {metrics}")
        paper[benchmark] = {k: float(v) for k, v in metrics.items()}
    return paper


def _read_entry(raw, index: int, variants: Mapping[str, VariantInfo], path: Path) -> ZooEntry:
    where = f"{path}: checkpoints[{index}]" + (f" ({raw.get('id')})" if isinstance(raw, dict) else "")
    raw = _mapping(raw, where)
    missing = [name for name, required in ENTRY_FIELDS.items() if required and name not in raw]
    unknown = sorted(set(raw) - set(ENTRY_FIELDS))
    if missing or unknown:
        raise ZooError(f"{where}: " + "; ".join(filter(None, [
            f"missing field(s) {', '.join(missing)}" if missing else "",
            f"unknown field(s) {', '.join(unknown)}" if unknown else ""])))
    if raw["variant"] not in variants and raw["variant"] not in MODEL_NAMES:
        raise ZooError(f"{where}: variant {raw['variant']!r} is neither built here ({', '.join(MODEL_NAMES)}) nor "
                       "described under variants:")
    if raw["config"] is not None and not (CHECKOUT / raw["config"]).is_file():
        raise ZooError(f"{where}: config {raw['config']} not found (paths are relative to the checkout)")
    if raw["config"] is None and raw["variant"] in MODEL_NAMES:
        raise ZooError(f"{where}: the {raw['variant']} variant is built here: give its config")
    training = raw["training_data"]
    return ZooEntry(
        id=str(raw["id"]), title=str(raw["title"]), variant=str(raw["variant"]), backbone=str(raw["backbone"]),
        training_data=tuple(training) if isinstance(training, list) else (str(training),), config=raw["config"],
        file=raw["file"], published=_mapping(raw["published"], f"{where}.published"),
        paper=_read_paper(raw["paper"], f"{where}.paper"), options=_mapping(raw.get("options"), f"{where}.options"),
        inference=_mapping(raw.get("inference"), f"{where}.inference"),
        recorded_options=_mapping(raw.get("recorded_options"), f"{where}.recorded_options"),
        note=str(raw.get("note", "")))


def load_zoo(path=None) -> Zoo:
    """Read and check a zoo file (default ``configs/zoo.yaml``); ZooError naming the file and entry otherwise."""
    path = Path(path) if path is not None else ZOO_FILE
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ZooError(f"cannot read the zoo file {path}: {err}") from err
    raw = _mapping(raw, str(path))
    if raw.get("format_version") != FORMAT_VERSION:
        raise ZooError(f"{path}: format_version must be {FORMAT_VERSION}, got {raw.get('format_version')!r}")
    variants = {name: _read_variant(name, value, f"{path}: variants.{name}")
                for name, value in _mapping(raw.get("variants"), f"{path}: variants").items()}
    for name, info in variants.items():
        if info.same_layout_as is not None and info.same_layout_as not in MODEL_NAMES:
            raise ZooError(f"{path}: variants.{name}.same_layout_as {info.same_layout_as!r} is not built here")
    entries = [_read_entry(item, i, variants, path) for i, item in enumerate(raw.get("checkpoints") or [])]
    ids = [entry.id for entry in entries]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ZooError(f"{path}: duplicate id(s) {', '.join(duplicates)}")
    return Zoo(path, variants, entries)


# ---------------------------------------------------------------------------------------------- architectures

def architecture_signature(args: argparse.Namespace) -> Tuple:
    """What determines the parameter layout of the model of ``args``: its architecture options and the text
    encoder it is built with (its folder's config gives the text encoder's shapes); the dataset only through the
    class count, so not with ``--binary``."""
    names = ["model", *architecture_options(), *EXTRA_ARCHITECTURE_OPTIONS, *NOT_ARCHITECTURE]
    skip = {"dataset_file"} if getattr(args, "binary", False) else set()
    return tuple((name, json.dumps(getattr(args, name, None), sort_keys=True, default=str))
                 for name in dict.fromkeys(names) if name not in skip)


def architecture_names() -> List[str]:
    """The options that make an architecture: ``model`` and every option changing the parameters or outputs (not
    where the files are)."""
    return [n for n in dict.fromkeys(("model", *architecture_options(), *EXTRA_ARCHITECTURE_OPTIONS))
            if n not in NOT_ARCHITECTURE]


def architecture_values(args: argparse.Namespace) -> Dict[str, Any]:
    """The architecture options of ``args`` that differ from the parser's defaults: what a command line must give
    to build its model from a public checkpoint."""
    parser = opts.get_args_parser()
    return {n: getattr(args, n) for n in architecture_names() if getattr(args, n, None) != parser.get_default(n)}


def architecture_label(args: argparse.Namespace) -> str:
    return f"{args.model or 'referformer'} {args.backbone}"


_LAYOUTS: Dict[Tuple, Dict[str, Tuple[int, ...]]] = {}


def build_layout(args: argparse.Namespace) -> Dict[str, Tuple[int, ...]]:
    """name -> shape of the state dict of the model of ``args``, built on the meta device (cached per signature)."""
    signature = architecture_signature(args)
    if signature not in _LAYOUTS:
        models_logger = logging.getLogger("rvos.models")
        level = models_logger.level
        models_logger.setLevel(logging.WARNING)  # the builders' notes are for models that run, not for layouts
        try:
            with torch.device("meta"):
                model, _, _ = build_model(args)
        finally:
            models_logger.setLevel(level)
        layout = {k: tuple(v.shape) for k, v in normalise_state_dict(model.state_dict()).items()}
        # Options outside the layout (e.g. freeze_text_encoder) give equal layouts: one object, so `is` tells.
        _LAYOUTS[signature] = next((known for known in _LAYOUTS.values() if known == layout), layout)
    return _LAYOUTS[signature]


def recorded_model_args(layout: CheckpointLayout, shapes: Mapping[str, tuple]) -> Optional[argparse.Namespace]:
    """The options a checkpoint records (ours, or a public checkpoint's pickled ``args``) over the parser's
    defaults, its variant inferred as ``inference.py`` does; None when it records none. A recorded
    ``text_encoder`` folder that is not on this machine is replaced by the default (roberta-base)."""
    if not layout.config:
        return None
    args = opts.parse_args(["--device", "cpu"])
    for key, value in layout.config.items():
        if hasattr(args, key):
            setattr(args, key, value)
    if layout.legacy or args.model not in MODEL_NAMES:
        args.model = infer_model_name(layout.config, dict(shapes))
    if args.text_encoder and not Path(args.text_encoder).exists() and "/" in str(args.text_encoder):
        args.text_encoder = opts.get_args_parser().get_default("text_encoder")
    args.backbone_pretrained, args.pretrained_weights, args.device = None, None, "cpu"
    return args


# ---------------------------------------------------------------------------------------------- identification

@dataclass
class Fit:
    """How a checkpoint relates to one candidate: a zoo entry (``entry``) or an architecture without an entry
    (its recorded options, or a variant not built here). ``how``: what was compared; ``agrees`` / ``contradicts``:
    the recorded options (or the file name) for and against it; ``missing`` / ``unexpected`` / ``shapes``: the
    differences of names and shapes (all empty for an exact fit)."""

    variant: str
    label: str
    how: str
    entry: Optional[ZooEntry] = None
    args: Optional[argparse.Namespace] = None
    missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)
    shapes: List[Tuple[str, tuple, tuple]] = field(default_factory=list)
    agrees: List[str] = field(default_factory=list)
    contradicts: List[str] = field(default_factory=list)
    total: int = 1
    layout_id: int = 0

    @property
    def exact(self) -> bool:
        return not (self.missing or self.unexpected or self.shapes)

    @property
    def overlap(self) -> float:
        """Fraction of the names of both with the same shape in both."""
        differing = len(self.missing) + len(self.unexpected) + len(self.shapes)
        return max(0.0, 1.0 - differing / max(1, self.total))


@dataclass
class Identification:
    """``fits``: exact fits whose recorded options agree (best first); ``ruled_out``: exact fits the recorded options
    contradict; ``closest``: without a fit, the nearest architecture; ``variant``: the best guess of the variant."""

    source: str
    layout: CheckpointLayout
    fits: List[Fit]
    ruled_out: List[Fit]
    closest: Optional[Fit]
    notes: List[str]

    @property
    def variant(self) -> Optional[str]:
        if self.fits:
            return self.fits[0].variant
        return self.closest.variant if self.closest is not None else None

    @property
    def entries(self) -> List[ZooEntry]:
        return [fit.entry for fit in self.fits if fit.entry is not None]

    def architecture_args(self) -> Optional[argparse.Namespace]:
        """The options of the one architecture that every fit of a variant built here shares (None when there is
        no such fit, or several layouts). Variants with the same parameters (TFVOS and ReferFormer) that the
        recorded options do not tell apart give the base model, as ``infer_model_name`` does for ``inference.py``."""
        built = [fit for fit in self.fits if fit.variant in MODEL_NAMES and fit.args is not None]
        if not built or len({fit.layout_id for fit in built}) != 1:
            return None
        if len({fit.variant for fit in built}) != 1:
            built = [fit for fit in built if fit.variant == "referformer"]
            if not built:
                return None
        return built[0].args


def _compare_options(recorded: Optional[Mapping], expected: Mapping[str, Any], who: str) -> Tuple[List[str], List[str]]:
    """(agreeing, contradicting) statements about a public checkpoint's recorded options (its pickled ``args``,
    which hold every option of the code that wrote it) against what ``who`` records (None: the option is absent)."""
    agrees, contradicts = [], []
    if recorded is None:
        return agrees, contradicts
    for key, value in expected.items():
        present = key in recorded and recorded[key] is not None
        if value is None and present:
            contradicts.append(f"{key} recorded as {recorded[key]!r}, {who} records none")
        elif value is None:
            agrees.append(f"no {key} recorded, as {who}")
        elif not present:
            continue  # written by other code (a fork, a conversion): no evidence either way
        elif recorded[key] == value:
            agrees.append(f"{key} = {value!r} recorded, as {who}")
        else:
            contradicts.append(f"{key} recorded as {recorded[key]!r}, {who} records {value!r}")
    return agrees, contradicts


def _judge(fit: Fit, zoo: Zoo, layout: CheckpointLayout, file_name: str) -> Fit:
    """Fill ``agrees`` / ``contradicts`` from the recorded options and the file name."""
    recorded = layout.config
    if recorded is not None and not layout.legacy and recorded.get("model") in MODEL_NAMES:
        if recorded["model"] == fit.variant:
            fit.agrees.append(f"its config says --model {fit.variant}")
        else:
            fit.contradicts.append(f"its config says --model {recorded['model']}, not {fit.variant}")
    if layout.legacy:
        info = zoo.variant(fit.variant)
        agrees, contradicts = _compare_options(recorded, info.recorded_options, info.label)
        fit.agrees += agrees
        fit.contradicts += contradicts
        if fit.entry is not None:
            agrees, contradicts = _compare_options(recorded, fit.entry.recorded_options, fit.entry.id)
            fit.agrees += agrees
            fit.contradicts += contradicts
    if fit.entry is not None and file_name in fit.entry.file_names():
        fit.agrees.append(f"file name {file_name}")
    return fit


def _shape_fit(variant: str, label: str, how: str, own: Mapping[str, tuple], theirs: Mapping[str, tuple],
               entry: Optional[ZooEntry] = None, args: Optional[argparse.Namespace] = None) -> Fit:
    missing, unexpected, shapes = compare_shapes(dict(own), dict(theirs))
    return Fit(variant, label, how, entry, args, missing, unexpected, shapes, total=len(set(own) | set(theirs)),
               layout_id=id(own))


def identify(path, zoo: Optional[Zoo] = None, overrides: Optional[Mapping[str, Any]] = None) -> Identification:
    """Identify the checkpoint file or folder at ``path`` against ``zoo`` (default ``configs/zoo.yaml``), reading
    no weights. ``overrides`` are options applied to every zoo entry's config (e.g. a local ``text_encoder``)."""
    zoo = zoo or load_zoo()
    layout = checkpoint_layout(path)
    return identify_layout(layout, zoo, Path(path).name, overrides)


def identify_layout(layout: CheckpointLayout, zoo: Zoo, file_name: str = "",
                    overrides: Optional[Mapping[str, Any]] = None) -> Identification:
    """``identify`` on a layout already read (e.g. a manifest of names and shapes with its recorded options)."""
    shapes = normalise_state_dict(layout.shapes)
    notes: List[str] = []
    candidates: List[Fit] = []
    by_signature: Dict[Tuple, argparse.Namespace] = {}
    for entry in zoo.entries:
        if not entry.built:
            continue
        try:
            args = entry.model_args(**(overrides or {}))
            own = build_layout(args)
        except (ValueError, FileNotFoundError, RuntimeError, KeyError) as err:
            notes.append(f"zoo entry {entry.id}: its model cannot be built here ({type(err).__name__}: {err})")
            continue
        by_signature.setdefault(architecture_signature(args), args)
        candidates.append(_shape_fit(entry.variant, architecture_label(args), "names and shapes", own, shapes,
                                     entry, args))
    recorded = recorded_model_args(layout, shapes)
    if recorded is not None and architecture_signature(recorded) not in by_signature:
        try:
            own = build_layout(recorded)
        except (ValueError, FileNotFoundError, RuntimeError, KeyError) as err:
            notes.append(f"its recorded options describe a model this code does not build ({type(err).__name__}: "
                         f"{err})")
        else:
            if all(build_layout(args) is not own for args in by_signature.values()):
                candidates.append(_shape_fit(recorded.model, architecture_label(recorded),
                                             "names and shapes of the architecture its recorded options describe",
                                             own, shapes, None, recorded))
    candidates += _layout_relatives(zoo, candidates)
    candidates += _prefix_matches(zoo, shapes)
    for fit in candidates:
        _judge(fit, zoo, layout, file_name)
    exact = [fit for fit in candidates if fit.exact]
    fits = sorted((f for f in exact if not f.contradicts), key=lambda f: -len(f.agrees))
    ruled_out = [f for f in exact if f.contradicts]
    closest = None
    if not exact and candidates:
        closest = max(candidates, key=lambda f: (f.overlap, not f.contradicts, len(f.agrees)))
    return Identification(layout.source, layout, fits, ruled_out, closest, notes)


def _layout_relatives(zoo: Zoo, candidates: Sequence[Fit]) -> List[Fit]:
    """For each variant the zoo says has another variant's layout (``same_layout_as``), a fit of the same names and
    shapes for every architecture of that other variant (TFVOS for ReferFormer)."""
    relatives = []
    seen = set()
    for name, info in zoo.variants.items():
        if info.same_layout_as is None:
            continue
        for fit in candidates:
            if fit.variant != info.same_layout_as:
                continue
            key = (name, fit.layout_id)
            if key in seen:
                continue
            seen.add(key)
            entries = [e for e in zoo.entries if e.variant == name and e.backbone == fit.args.backbone]
            how = f"same names and shapes as {info.same_layout_as} (the zoo: {name} has its layout)"
            for entry in entries or [None]:
                relatives.append(Fit(name, f"{name} {fit.args.backbone}", how, entry, fit.args, list(fit.missing),
                                     list(fit.unexpected), list(fit.shapes), total=fit.total, layout_id=fit.layout_id))
    return relatives


def _prefix_matches(zoo: Zoo, shapes: Mapping[str, tuple]) -> List[Fit]:
    """Variants not built here recognised by state-dict prefixes only they have (shapes not checked)."""
    found = []
    for name, info in zoo.variants.items():
        if info.built or not info.key_prefixes:
            continue
        hits = sum(1 for key in shapes if key.startswith(info.key_prefixes))
        if hits:
            how = (f"{hits} names under {', '.join(info.key_prefixes)}, which only {info.label} has (the variant is "
                   "not built here: shapes not checked)")
            entries = [e for e in zoo.entries if e.variant == name]
            for entry in entries or [None]:
                found.append(Fit(name, name, how, entry, None, total=len(shapes)))
    return found


# ---------------------------------------------------------------------------------------------- text

def _fit_line(fit: Fit) -> str:
    head = f"{fit.entry.id}  ({fit.entry.title}; --config {fit.entry.config})" if fit.entry and fit.entry.config \
        else f"{fit.entry.id}  ({fit.entry.title})" if fit.entry else f"no zoo entry: {fit.label}"
    reasons = "; ".join(fit.contradicts or fit.agrees)
    return f"  {head}\n      {fit.how}" + (f"; {reasons}" if reasons else "")


def format_identification(ident: Identification, zoo: Zoo) -> str:
    """The text ``tools/zoo.py identify`` prints."""
    layout = ident.layout
    kind = ("no recorded options" if layout.config is None else
            "options recorded by the original code (pickled args)" if layout.legacy else "its own config (this project)")
    lines = [f"{ident.source}: {len(layout.shapes)} tensors, {kind}"]
    if ident.fits:
        lines.append("fits:")
        lines += [_fit_line(fit) for fit in ident.fits]
        args, variant = ident.architecture_args(), ident.fits[0].variant
        if variant not in MODEL_NAMES:
            lines.append(f"  the {variant} variant is not built here yet")
        if args is not None and not any(f.entry for f in ident.fits):
            lines.append(f"  load it with --model {args.model} --backbone {args.backbone} (its recorded options)")
    if ident.ruled_out:
        lines.append("same names and shapes, but its recorded options rule these out:")
        lines += [_fit_line(fit) for fit in ident.ruled_out]
    if not ident.fits and not ident.ruled_out:
        lines.append("fits no zoo entry.")
        closest = ident.closest
        if closest is not None:
            info = zoo.variant(closest.variant)
            lines.append(f"closest architecture: {closest.label} ({info.label}"
                         + (f", zoo entry {closest.entry.id}" if closest.entry else "") + f"): {closest.how}; "
                         f"{100 * closest.overlap:.1f}% of the names with the same shapes")
            if closest.agrees or closest.contradicts:
                lines.append("  recorded options: " + "; ".join(closest.agrees + closest.contradicts))
            model_config = vars(closest.args) if closest.args is not None else None
            lines.append(mismatch_report(ident.source, closest.missing, closest.unexpected, closest.shapes,
                                         layout.config, model_config))
    lines += [f"note: {note}" for note in ident.notes]
    return "\n".join(lines)
