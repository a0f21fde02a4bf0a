"""Backbone zoo (names -> configs) and ``build_backbone(args)``.

Config precedence: the zoo entry, then ``args.backbone_config`` (a dict, e.g. from a config file),
then the ``config_override`` argument. Unknown config keys are errors. Activation checkpointing is
on when either the config's ``use_checkpoint`` or ``args.use_checkpoint`` is set.
"""
import copy
import logging
from typing import Any, Dict, Optional

from .convert import load_backbone_pretrained
from .joiner import Joiner, VisualBackbone
from .position_encoding import PositionEmbeddingSine2D
from .resnet import RESNET_CHANNELS, RESNET_CONFIGS, build_resnet_body, freeze_resnet, resnet_strides
from .swin import SWIN_COMMON, SWIN_CONFIGS, SwinTransformer
from .video_swin import VIDEO_SWIN_COMMON, VIDEO_SWIN_CONFIGS, VideoSwinTransformer

logger = logging.getLogger(__name__)

_ZOO: Dict[str, Dict[str, Any]] = {
    **{name: dict(family="resnet", config=cfg) for name, cfg in RESNET_CONFIGS.items()},
    **{name: dict(family="swin", config={**SWIN_COMMON, **cfg}) for name, cfg in SWIN_CONFIGS.items()},
    **{name: dict(family="video_swin", config={**VIDEO_SWIN_COMMON, **cfg})
       for name, cfg in VIDEO_SWIN_CONFIGS.items()},
}
BACKBONE_NAMES = tuple(_ZOO)
POSITION_EMBEDDINGS = ("sine", "v2")


def backbone_family(name: str) -> str:
    """'resnet', 'swin' or 'video_swin'; ValueError naming the valid backbones otherwise."""
    if name not in _ZOO:
        raise ValueError(f"unknown backbone {name!r}; valid backbones: {', '.join(BACKBONE_NAMES)}")
    return _ZOO[name]["family"]


def backbone_config(name: str) -> Dict[str, Any]:
    """A fresh copy of the zoo config of ``name`` (plain dict of ints, floats, bools, lists, None)."""
    backbone_family(name)
    return copy.deepcopy(_ZOO[name]["config"])


def resolve_backbone_config(name: str, *overrides: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """The zoo config of ``name`` updated by each non-empty override in turn; unknown keys are a ValueError."""
    config = backbone_config(name)
    for override in overrides:
        if not override:
            continue
        unknown = sorted(set(override) - set(config))
        if unknown:
            raise ValueError(f"backbone config for {name!r}: unknown keys {unknown}; valid keys: {sorted(config)}")
        config.update(copy.deepcopy(dict(override)))
    return config


def _train_backbone(args) -> bool:
    lr_backbone = getattr(args, "lr_backbone", None)
    return lr_backbone is None or lr_backbone > 0


def _build_visual_backbone(args, name: str, config: Dict[str, Any]) -> VisualBackbone:
    family = backbone_family(name)
    config = dict(config)
    use_checkpoint = bool(config.pop("use_checkpoint", False) or getattr(args, "use_checkpoint", False))
    output_levels = getattr(args, "output_levels", None)
    if family != "video_swin" and output_levels not in (None, 4):
        raise ValueError(f"--output_levels {output_levels} is only supported with video_swin backbones, not {name!r}")
    if family == "resnet":
        dilation = bool(config["dilation"] or getattr(args, "dilation", False))
        body = build_resnet_body(name, dilation)
        if not getattr(args, "backbone_pretrained", None):
            logger.info("%s starts from random weights (the original downloads ImageNet weights); pass "
                        "--backbone_pretrained with a local torchvision file to start from ImageNet", name)
        freeze_resnet(body, _train_backbone(args))
        return VisualBackbone(body, resnet_strides(dilation), RESNET_CHANNELS, temporal=False)
    if family == "swin":
        body = SwinTransformer(**config, use_checkpoint=use_checkpoint)
        temporal = False
    else:
        body = VideoSwinTransformer(**config, use_checkpoint=use_checkpoint, num_levels=output_levels)
        temporal = True
    if not _train_backbone(args):
        body.requires_grad_(False)
    return VisualBackbone(body, body.strides, body.num_channels, temporal=temporal)


def build_backbone(args, config_override: Optional[Dict[str, Any]] = None) -> Joiner:
    """Joiner(VisualBackbone, PositionEmbeddingSine2D(args.hidden_dim // 2, normalize=True)).

    Reads ``args.backbone``, ``args.hidden_dim`` and, when present, ``lr_backbone`` (<= 0 freezes the
    backbone; ResNet also keeps conv1/layer1 frozen), ``dilation`` (ResNet), ``use_checkpoint``,
    ``output_levels`` (Video-Swin), ``position_embedding``, ``backbone_config`` (dict override) and
    ``backbone_pretrained`` (a weights file loaded with ``load_backbone_pretrained``).
    """
    name = args.backbone
    config = resolve_backbone_config(name, getattr(args, "backbone_config", None), config_override)
    position_embedding_type = getattr(args, "position_embedding", "sine")
    if position_embedding_type not in POSITION_EMBEDDINGS:
        raise ValueError(f"position_embedding {position_embedding_type!r} is not supported; "
                         f"valid: {POSITION_EMBEDDINGS}")
    backbone = _build_visual_backbone(args, name, config)
    joiner = Joiner(backbone, PositionEmbeddingSine2D(args.hidden_dim // 2, normalize=True))
    pretrained = getattr(args, "backbone_pretrained", None)
    if pretrained:
        load_backbone_pretrained(joiner, pretrained)
    return joiner
