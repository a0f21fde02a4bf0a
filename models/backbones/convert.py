"""Converters for backbone pretraining files (``--backbone_pretrained``) and a strict loader.

What each converter keeps or drops is what the original code ends up loading:

* Swin ImageNet (official Swin-Transformer release, ``{'model': state_dict}``): ReferFormer calls
  ``load_state_dict(checkpoint['model'], strict=False)``; the entries that do not fit are the
  classifier ``head.*``, the final ``norm.*`` (the backbone has per-level ``norm0..3`` instead, which
  stay at their init) and the shift masks ``layers.{i}.blocks.{j}.attn_mask``. Everything else loads.
* Video-Swin Kinetics (mmaction, ``{'state_dict': ...}``): the original keeps the ``backbone.``
  entries (dropping ``cls_head.*``), sums ``patch_embed.proj.weight`` [C, 3, 2, 4, 4] over time to
  [C, 3, 1, 4, 4], loads strictly into SwinTransformer3D and then discards its final ``norm`` and
  moves ``layers.{i}.downsample`` to ``downsamples.{i}``.
* ResNet (torchvision ImageNet file, a plain state_dict; the original downloads it): ``fc.*`` and
  BatchNorm ``num_batches_tracked`` are dropped.

Anything else that does not fit is an error with a table of missing / unexpected / mis-shaped keys;
only the documented ``ALLOWED_MISSING`` patterns may be absent from a file.
"""
import logging
import pickle
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Mapping, NamedTuple, Optional, Tuple, Union

import torch
from torch import nn
from torchvision.models._utils import IntermediateLayerGetter

from .joiner import Joiner, VisualBackbone
from .swin import SwinTransformer
from .video_swin import VideoSwinTransformer

logger = logging.getLogger(__name__)

StateDict = Dict[str, torch.Tensor]

SWIN_DROPPED = (r"head\.(weight|bias)", r"norm\.(weight|bias)", r"layers\.\d+\.blocks\.\d+\.attn_mask")
VIDEO_SWIN_DROPPED_AFTER_PREFIX = (r"norm\.(weight|bias)",)
RESNET_DROPPED = (r"fc\.(weight|bias)", r".*\.num_batches_tracked")
ALLOWED_MISSING = {
    # The per-level output norms are not in ImageNet classification files (they keep their init).
    "swin": (r"norm\d+\.(weight|bias)", r".*\.attn\.relative_position_index"),
    # relative_position_index is deterministic (rebuilt at construction); files usually carry it anyway.
    "video_swin": (r".*\.attn\.relative_position_index",),
    "resnet": (),
}


class ConvertedWeights(NamedTuple):
    state_dict: StateDict
    dropped: List[str]


def _matches(key: str, patterns) -> bool:
    return any(re.fullmatch(p, key) for p in patterns)


def _unwrap(checkpoint, wanted: str, kind: str) -> Mapping[str, torch.Tensor]:
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f"{kind} weights: expected a dict, got {type(checkpoint).__name__}")
    if wanted not in checkpoint:
        hint = {"model": " (an official 2-D Swin ImageNet file; use a swin_* backbone)",
                "state_dict": " (an mmaction Video-Swin Kinetics file; use a video_swin_* backbone)"}
        other = next((hint[k] for k in hint if k != wanted and k in checkpoint), "")
        raise ValueError(f"{kind} weights: expected a {wanted!r} entry; top-level keys are "
                         f"{sorted(map(str, checkpoint))[:10]}{other}")
    return checkpoint[wanted]


def _reject_full_model(state_dict: Mapping[str, torch.Tensor], kind: str) -> None:
    if any(str(k).startswith("backbone.0.body.") for k in state_dict):
        raise ValueError(f"{kind} weights: this is a whole-model (ReferFormer-family) checkpoint, not a backbone "
                         "pretraining file; load it with --resume or --pretrained_weights instead")


def filter_swin(checkpoint) -> ConvertedWeights:
    """Official Swin ImageNet checkpoint ``{'model': sd}`` -> ReferFormer 2-D Swin body keys."""
    state_dict = _unwrap(checkpoint, "model", "Swin ImageNet")
    _reject_full_model(state_dict, "Swin ImageNet")
    kept = {k: v for k, v in state_dict.items() if not _matches(k, SWIN_DROPPED)}
    return ConvertedWeights(kept, sorted(set(state_dict) - set(kept)))


def filter_video_swin(checkpoint) -> ConvertedWeights:
    """mmaction Video-Swin checkpoint ``{'state_dict': {'backbone.*', 'cls_head.*'}}`` -> body keys."""
    state_dict = _unwrap(checkpoint, "state_dict", "Video-Swin Kinetics")
    _reject_full_model(state_dict, "Video-Swin Kinetics")
    prefix = "backbone."
    dropped = sorted(k for k in state_dict if not k.startswith(prefix))
    converted: StateDict = {}
    for key, value in state_dict.items():
        if not key.startswith(prefix):
            continue
        name = key[len(prefix):]
        if _matches(name, VIDEO_SWIN_DROPPED_AFTER_PREFIX):
            dropped.append(key)
            continue
        name = re.sub(r"^layers\.(\d+)\.downsample\.", r"downsamples.\1.", name)
        if name == "patch_embed.proj.weight" and value.dim() == 5:
            value = value.sum(dim=2, keepdim=True)
        converted[name] = value
    return ConvertedWeights(converted, dropped)


def filter_resnet(checkpoint) -> ConvertedWeights:
    """torchvision ResNet ImageNet state_dict (optionally under 'model' / 'state_dict') -> body keys."""
    state_dict = checkpoint
    if isinstance(checkpoint, Mapping):
        for wrapper in ("model", "state_dict"):
            if isinstance(checkpoint.get(wrapper), Mapping):
                state_dict = checkpoint[wrapper]
                break
    if not isinstance(state_dict, Mapping):
        raise ValueError(f"ResNet weights: expected a state_dict, got {type(state_dict).__name__}")
    _reject_full_model(state_dict, "ResNet")
    kept = {k: v for k, v in state_dict.items() if not _matches(k, RESNET_DROPPED)}
    return ConvertedWeights(kept, sorted(set(state_dict) - set(kept)))


FILTERS: Dict[str, Callable[[object], ConvertedWeights]] = {
    "swin": filter_swin, "video_swin": filter_video_swin, "resnet": filter_resnet}


@dataclass
class BackboneLoadReport:
    """Outcome of fitting a converted file to a backbone body (key names relative to the body).

    ``shapes`` maps every allowed-missing / missing / unexpected / mis-shaped key to
    (shape in the file or None, shape in the model or None).
    """
    path: str
    kind: str
    loaded: List[str] = field(default_factory=list)
    dropped: List[str] = field(default_factory=list)
    allowed_missing: List[str] = field(default_factory=list)
    missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)
    mis_shaped: List[str] = field(default_factory=list)
    shapes: Dict[str, Tuple[Optional[Tuple[int, ...]], Optional[Tuple[int, ...]]]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mis_shaped)

    def table(self) -> str:
        """Summary line plus one row per key that was not loaded (status, key, file shape, model shape)."""
        lines = [f"backbone weights {self.path} ({self.kind}): {len(self.loaded)} loaded, "
                 f"{len(self.dropped)} dropped by the converter, {len(self.allowed_missing)} allowed missing, "
                 f"{len(self.missing)} missing, {len(self.unexpected)} unexpected, {len(self.mis_shaped)} mis-shaped"]
        rows = [(status, key) for status, keys in (("missing", self.missing), ("unexpected", self.unexpected),
                                                   ("mis-shaped", self.mis_shaped), ("allowed", self.allowed_missing))
                for key in keys]
        if rows:
            width = max(len(key) for _, key in rows)
            lines.append(f"{'status':<11} {'key':<{width}}  {'file shape':<20} model shape")
            for status, key in rows:
                file_shape, model_shape = (list(s) if s is not None else "-" for s in self.shapes[key])
                lines.append(f"{status:<11} {key:<{width}}  {str(file_shape):<20} {model_shape}")
        return "\n".join(lines)


def backbone_body(module: nn.Module) -> nn.Module:
    """The body (``backbone.0.body``) of a Joiner or VisualBackbone, or ``module`` itself."""
    if isinstance(module, Joiner):
        module = module[0]
    return module.body if isinstance(module, VisualBackbone) else module


def body_kind(body: nn.Module) -> str:
    if isinstance(body, VideoSwinTransformer):
        return "video_swin"
    if isinstance(body, SwinTransformer):
        return "swin"
    if isinstance(body, IntermediateLayerGetter):
        return "resnet"
    raise TypeError(f"no pretrained-weights converter for a {type(body).__name__} backbone")


def compare_state_dicts(model_state: Mapping[str, torch.Tensor], converted: ConvertedWeights, kind: str,
                        path: str) -> BackboneLoadReport:
    """Key-by-key comparison of a converted file with the body's own state_dict."""
    report = BackboneLoadReport(path=path, kind=kind, dropped=list(converted.dropped))
    for key, target in model_state.items():
        model_shape = tuple(target.shape)
        if key not in converted.state_dict:
            (report.allowed_missing if _matches(key, ALLOWED_MISSING[kind]) else report.missing).append(key)
            report.shapes[key] = (None, model_shape)
        elif tuple(converted.state_dict[key].shape) != model_shape:
            report.mis_shaped.append(key)
            report.shapes[key] = (tuple(converted.state_dict[key].shape), model_shape)
        else:
            report.loaded.append(key)
    report.unexpected = sorted(set(converted.state_dict) - set(model_state))
    report.shapes.update({key: (tuple(converted.state_dict[key].shape), None) for key in report.unexpected})
    return report


def read_weights_file(path: Union[str, Path]):
    """torch.load(weights_only=True) with errors that name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"backbone weights file not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "weights only load failed" not in str(error).lower():
            raise ValueError(f"backbone weights {path}: not a readable PyTorch file (corrupt?): {error}") from error
        raise ValueError(f"backbone weights {path}: the file pickles objects that torch.load(weights_only=True) "
                         f"refuses ({error}). If you trust it, re-save just its tensors "
                         "(the 'model' / 'state_dict' entry) with torch.save.") from error
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as error:
        raise ValueError(f"backbone weights {path}: not a readable PyTorch file (corrupt or truncated?): "
                         f"{error}") from error


def load_backbone_pretrained(backbone_module: nn.Module, path: Union[str, Path]) -> BackboneLoadReport:
    """Read, convert and strictly load a backbone pretraining file into ``backbone_module``.

    ``backbone_module``: a Joiner, a VisualBackbone or a body. The converter is chosen by the body
    type (Swin ImageNet, Video-Swin Kinetics, torchvision ResNet). Raises ValueError with the key
    table when anything but ``ALLOWED_MISSING`` is missing, or a key is unexpected or mis-shaped.
    """
    body = backbone_body(backbone_module)
    kind = body_kind(body)
    checkpoint = read_weights_file(path)
    try:
        converted = FILTERS[kind](checkpoint)
    except ValueError as error:
        raise ValueError(f"backbone weights {path}: {error}") from error
    model_state = body.state_dict()
    report = compare_state_dicts(model_state, converted, kind, str(path))
    if not report.ok:
        raise ValueError(f"backbone weights {path} do not fit the {kind} backbone:\n{report.table()}")
    merged = dict(model_state)
    merged.update(converted.state_dict)
    body.load_state_dict(merged, strict=True)
    logger.info(report.table())
    return report
