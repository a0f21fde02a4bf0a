"""Sine position embeddings of padded feature maps (2-D) and padded token sequences (1-D).

Both follow ReferFormer's ``models/position_encoding.py``: positions are counted over the
non-padded entries (cumsum of ``~mask``), optionally normalised to ``[0, scale]``, divided by
``temperature ** (2 * (i // 2) / num_pos_feats)`` and turned into interleaved
``sin, cos, sin, cos, ...`` channels.
"""
import math

import torch
from torch import nn

from rvos.util.misc import NestedTensor

NORMALISE_EPS = 1e-6


def _interleaved_sine(positions: torch.Tensor, num_pos_feats: int, temperature: float) -> torch.Tensor:
    """Positions [...] (float) -> embedding [..., num_pos_feats] = (sin p/d_0, cos p/d_1, sin p/d_2, ...)."""
    dim_t = torch.arange(num_pos_feats, dtype=torch.float32, device=positions.device)
    dim_t = temperature ** (2 * (dim_t // 2) / num_pos_feats)
    angles = positions[..., None] / dim_t
    return torch.stack((angles[..., 0::2].sin(), angles[..., 1::2].cos()), dim=-1).flatten(-2)


def _check_scale(normalize: bool, scale) -> float:
    if scale is not None and not normalize:
        raise ValueError("a position-embedding scale is only used with normalize=True")
    return 2 * math.pi if scale is None else scale


def _checked_mask(mask, who: str, layout: str) -> torch.Tensor:
    if mask is None or mask.dim() != layout.count(",") + 1:
        got = None if mask is None else tuple(mask.shape)
        raise ValueError(f"{who} needs a padding mask {layout} (True = padding), got {got}")
    return mask


class PositionEmbeddingSine2D(nn.Module):
    """2-D sine embedding of a padded batch of feature maps (DETR / Deformable-DETR).

    Input: a NestedTensor-like object with ``tensors`` [N, C, H, W] (only its device is used) and
    ``mask`` [N, H, W] (True = padding). Output: [N, 2 * num_pos_feats, H, W] float32, channels =
    cat(pos_y, pos_x). With ``normalize`` the positions are Deformable-DETR's
    ``(cumsum - offset) / (cumsum_last + 1e-6) * scale`` with ``offset`` 0.5 (Mask2Former / DETR: 0).
    """

    def __init__(self, num_pos_feats: int = 64, temperature: float = 10000, normalize: bool = True, scale=None,
                 offset: float = 0.5):
        super().__init__()
        self.num_pos_feats = num_pos_feats
        self.temperature = temperature
        self.normalize = normalize
        self.scale = _check_scale(normalize, scale)
        self.offset = offset

    def forward(self, features: NestedTensor) -> torch.Tensor:
        mask = _checked_mask(features.mask, "PositionEmbeddingSine2D", "[N, H, W]")
        not_mask = ~mask
        y_embed = not_mask.cumsum(1, dtype=torch.float32)
        x_embed = not_mask.cumsum(2, dtype=torch.float32)
        if self.normalize:
            y_embed = (y_embed - self.offset) / (y_embed[:, -1:, :] + NORMALISE_EPS) * self.scale
            x_embed = (x_embed - self.offset) / (x_embed[:, :, -1:] + NORMALISE_EPS) * self.scale
        pos_y = _interleaved_sine(y_embed, self.num_pos_feats, self.temperature)
        pos_x = _interleaved_sine(x_embed, self.num_pos_feats, self.temperature)
        return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2)

    def unpadded(self, maps: torch.Tensor) -> torch.Tensor:
        """The embedding of maps [N, C, H, W] without padding (every pixel counts, as Mask2Former)."""
        mask = torch.zeros((maps.shape[0], *maps.shape[-2:]), dtype=torch.bool, device=maps.device)
        return self(NestedTensor(maps, mask))


class PositionEmbeddingSine1D(nn.Module):
    """1-D sine embedding of padded token sequences (ReferFormer's text positions).

    Input: a NestedTensor-like object with ``mask`` [B, L] (True = padding; ``tensors`` only gives
    the device). Output: [B, num_pos_feats, L] float32 -- the original's channel-first layout;
    ReferFormer uses it as ``pos.permute(2, 0, 1)`` = [L, B, C]. With ``normalize`` the positions
    are ``cumsum / (cumsum_last + 1e-6) * scale`` (no -0.5 shift, unlike the 2-D embedding).
    """

    def __init__(self, num_pos_feats: int = 256, temperature: float = 10000, normalize: bool = True, scale=None):
        super().__init__()
        self.num_pos_feats = num_pos_feats
        self.temperature = temperature
        self.normalize = normalize
        self.scale = _check_scale(normalize, scale)

    def forward(self, tokens: NestedTensor) -> torch.Tensor:
        mask = _checked_mask(tokens.mask, "PositionEmbeddingSine1D", "[B, L]")
        x_embed = (~mask).cumsum(1, dtype=torch.float32)
        if self.normalize:
            x_embed = x_embed / (x_embed[:, -1:] + NORMALISE_EPS) * self.scale
        return _interleaved_sine(x_embed, self.num_pos_feats, self.temperature).permute(0, 2, 1)
