"""The visual backbone wrapper and the Joiner (backbone + position embedding).

``Joiner`` is ``nn.Sequential(VisualBackbone, PositionEmbeddingSine2D)`` so that, registered as
``model.backbone``, its weights are ``backbone.0.body.*`` exactly as in the public checkpoints.
"""
from typing import List, Sequence, Tuple

import torch
from torch import nn

from rvos.util.misc import NestedTensor, interpolate_mask

from .position_encoding import PositionEmbeddingSine2D


class VisualBackbone(nn.Module):
    """Runs ``body`` on a padded clip batch and attaches a padding mask to every level.

    ``temporal`` bodies (Video-Swin) take clips [B, T, 3, H, W]; the others (ResNet, Swin) take
    frames [B*T, 3, H, W]. Every body returns per-frame maps [B*T, C_l, H_l, W_l] in (b t) order,
    as a list or as a dict in level order.
    """

    def __init__(self, body: nn.Module, strides: Sequence[int], num_channels: Sequence[int], temporal: bool):
        super().__init__()
        self.body = body
        self.strides = list(strides)
        self.num_channels = list(num_channels)
        self.temporal = temporal

    def forward(self, clips: torch.Tensor, mask: torch.Tensor) -> List[NestedTensor]:
        """clips [B, T, 3, H, W], mask [B, T, H, W] (True = padding) -> list of NestedTensor
        (tensors [B*T, C_l, H_l, W_l], mask [B*T, H_l, W_l] nearest-interpolated)."""
        levels = self.body(clips if self.temporal else clips.flatten(0, 1))
        if isinstance(levels, dict):
            levels = list(levels.values())
        frame_mask = mask.flatten(0, 1)
        return [NestedTensor(x, interpolate_mask(frame_mask, x.shape[-2:])) for x in levels]


class Joiner(nn.Sequential):
    """Backbone + 2-D sine position embedding of every level.

    Attributes: ``strides`` (e.g. [4, 8, 16, 32]) and ``num_channels`` per level.
    """

    def __init__(self, backbone: VisualBackbone, position_embedding: PositionEmbeddingSine2D):
        super().__init__(backbone, position_embedding)
        self.strides = backbone.strides
        self.num_channels = backbone.num_channels

    def forward(self, samples: NestedTensor) -> Tuple[List[NestedTensor], List[torch.Tensor]]:
        """samples: tensors [B, T, 3, H, W], mask [B, T, H, W] (True = padding; None = no padding).

        Returns ``(features, pos)``: per level a NestedTensor (tensors [B*T, C_l, H_l, W_l] in (b t)
        order, mask [B*T, H_l, W_l]) and the position embedding [B*T, 2 * (hidden_dim // 2), H_l, W_l]
        in the features' dtype. T is taken from the input; ``samples`` is not modified.
        """
        clips, mask = samples.tensors, samples.mask
        if clips.dim() != 5:
            raise ValueError(f"the visual backbone expects clips [B, T, 3, H, W], got shape {tuple(clips.shape)}")
        if mask is None:
            mask = torch.zeros((*clips.shape[:2], *clips.shape[-2:]), dtype=torch.bool, device=clips.device)
        elif mask.shape != clips.shape[:2] + clips.shape[-2:]:
            raise ValueError(f"padding mask {tuple(mask.shape)} does not match clips {tuple(clips.shape)}; "
                             "expected [B, T, H, W]")
        features = self[0](clips, mask)
        pos = [self[1](level).to(level.tensors.dtype) for level in features]
        return features, pos
