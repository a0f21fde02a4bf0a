"""Visual backbones (ResNet, 2-D Swin, Video-Swin), their position embeddings and weight converters.

``build_backbone(args)`` returns a ``Joiner``; register it as ``model.backbone`` so its weights are
``backbone.0.body.*`` as in the public ReferFormer / SgMg / MUTR checkpoints.
"""
from .build import BACKBONE_NAMES, backbone_config, backbone_family, build_backbone, resolve_backbone_config
from .convert import (BackboneLoadReport, filter_resnet, filter_swin, filter_video_swin,
                      load_backbone_pretrained)
from .joiner import Joiner, VisualBackbone
from .position_encoding import PositionEmbeddingSine1D, PositionEmbeddingSine2D

__all__ = [
    "BACKBONE_NAMES", "BackboneLoadReport", "Joiner", "PositionEmbeddingSine1D", "PositionEmbeddingSine2D",
    "VisualBackbone", "backbone_config", "backbone_family", "build_backbone", "filter_resnet", "filter_swin",
    "filter_video_swin", "load_backbone_pretrained", "resolve_backbone_config",
]
