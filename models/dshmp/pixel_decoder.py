"""Mask2Former's multi-scale deformable-attention pixel decoder, on the shared deformable encoder and MSDeformAttn op.

The encoder runs over the stride-32, 16 and 8 maps (in that order) with no padding mask (padded pixels are
attended, as the original), a 1024-wide FFN and Mask2Former's sine positions (no -0.5 offset); one FPN level
adds the stride-4 map with a bilinear top-down path. Parameter names are Mask2Former's (``input_proj.{i}``,
``transformer.level_embed``, ``transformer.encoder.layers.*``, ``adapter_1``, ``layer_1``, ``mask_features``).
"""
from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..backbones.position_encoding import PositionEmbeddingSine2D
from ..deformable_transformer import (DeformableEncoder, DeformableEncoderLayer, DeformableTransformer,
                                     reset_deformable_parameters)
from ..layers import ConvNormAct, c2_xavier_fill

# Mask2Former hard-codes the deformable encoder's FFN width.
ENCODER_FFN_DIM = 1024
GROUP_NORM_GROUPS = 32


class DeformableEncoderOnly(nn.Module):
    """``level_embed`` [L, C] + the deformable encoder, over maps given without padding masks."""

    def __init__(self, d_model: int, nhead: int, num_layers: int, num_levels: int, n_points: int = 4,
                 dropout: float = 0.0):
        super().__init__()
        self.encoder = DeformableEncoder(
            DeformableEncoderLayer(d_model, ENCODER_FFN_DIM, dropout, num_levels, nhead, n_points), num_layers)
        self.level_embed = nn.Parameter(torch.empty(num_levels, d_model))
        reset_deformable_parameters(self)
        nn.init.normal_(self.level_embed)

    def forward(self, srcs: Sequence[torch.Tensor], pos: Sequence[torch.Tensor]) -> List[torch.Tensor]:
        """srcs / pos: per level [N, C, H_l, W_l] -> encoded maps of the same shapes."""
        shapes = [tuple(s.shape[-2:]) for s in srcs]
        flat = torch.cat([s.flatten(2).transpose(1, 2) for s in srcs], 1)
        flat_pos = torch.cat([p.flatten(2).transpose(1, 2) + self.level_embed[lvl].view(1, 1, -1)
                              for lvl, p in enumerate(pos)], 1)
        masks = [torch.zeros((s.shape[0], *s.shape[-2:]), dtype=torch.bool, device=s.device) for s in srcs]
        spatial_shapes = torch.as_tensor(shapes, dtype=torch.long, device=flat.device)
        level_start = torch.cat((spatial_shapes.new_zeros((1,)), spatial_shapes.prod(1).cumsum(0)[:-1]))
        valid_ratios = torch.stack([DeformableTransformer.valid_ratio(m) for m in masks], 1)
        memory = self.encoder(flat, spatial_shapes, level_start, valid_ratios, flat_pos, torch.cat(
            [m.flatten(1) for m in masks], 1))
        n, _, c = memory.shape
        out, start = [], 0
        for h, w in shapes:
            out.append(memory[:, start:start + h * w].transpose(1, 2).reshape(n, c, h, w))
            start += h * w
        return out


class PixelDecoder(nn.Module):
    """Backbone maps (strides 4, 8, 16, 32; channels ``in_channels``) -> (mask features [N, mask_dim, H/4, W/4],
    the stride-4 map [N, conv_dim, H/4, W/4], the maps at strides 32, 16, 8 for the frame decoder)."""

    def __init__(self, in_channels: Sequence[int], conv_dim: int, mask_dim: int, nheads: int, enc_layers: int,
                 dropout: float = 0.0):
        super().__init__()
        self.input_proj = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, conv_dim, kernel_size=1), nn.GroupNorm(GROUP_NORM_GROUPS, conv_dim))
            for c in reversed(in_channels[1:]))
        for proj in self.input_proj:
            nn.init.xavier_uniform_(proj[0].weight, gain=1)
            nn.init.constant_(proj[0].bias, 0)
        self.transformer = DeformableEncoderOnly(conv_dim, nheads, enc_layers, len(self.input_proj), dropout=dropout)
        self.pe_layer = PositionEmbeddingSine2D(conv_dim // 2, normalize=True, offset=0.0)
        self.mask_features = nn.Conv2d(conv_dim, mask_dim, kernel_size=1)
        c2_xavier_fill(self.mask_features)
        self.adapter_1 = ConvNormAct(in_channels[0], conv_dim, kernel_size=1, bias=False,
                                     norm=nn.GroupNorm(GROUP_NORM_GROUPS, conv_dim))
        self.layer_1 = ConvNormAct(conv_dim, conv_dim, kernel_size=3, padding=1, bias=False,
                                   norm=nn.GroupNorm(GROUP_NORM_GROUPS, conv_dim), activation=F.relu)
        c2_xavier_fill(self.adapter_1)
        c2_xavier_fill(self.layer_1)

    def forward(self, features: Sequence[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor, List[torch.Tensor]]:
        with torch.autocast(features[0].device.type, enabled=False):
            levels = [f.float() for f in reversed(features[1:])]  # strides 32, 16, 8
            srcs = [proj(x) for proj, x in zip(self.input_proj, levels)]
            encoded = self.transformer(srcs, [self.pe_layer.unpadded(x) for x in levels])
            lateral = self.adapter_1(features[0].float())
            fine = self.layer_1(lateral + F.interpolate(encoded[-1], size=lateral.shape[-2:], mode="bilinear",
                                                        align_corners=False))
            return self.mask_features(fine), fine, encoded
