"""``MSDeformAttn``: the multi-scale deformable attention layer of Deformable-DETR / ReferFormer.

Parameter names, shapes and initialisation follow the original module, so its checkpoints load unchanged.
"""
import math
from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from .dispatch import ms_deform_attn

__all__ = ["MSDeformAttn"]


class MSDeformAttn(nn.Module):
    """Multi-scale deformable attention.

    Args:
        d_model: channels C of queries and values (divisible by ``n_heads``).
        n_levels: number of feature levels L.
        n_heads: number of attention heads M.
        n_points: sampling points P per head and level.
        im2col_step: batch elements per CUDA kernel launch (any batch size works; see ``ms_deform_attn``).
    """

    def __init__(self, d_model: int = 256, n_levels: int = 4, n_heads: int = 8, n_points: int = 4,
                 im2col_step: int = 64):
        super().__init__()
        if d_model % n_heads != 0:
            raise ValueError(f"d_model must be divisible by n_heads, got {d_model} and {n_heads}")
        self.d_model = d_model
        self.n_levels = n_levels
        self.n_heads = n_heads
        self.n_points = n_points
        self.im2col_step = im2col_step

        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        """Zero offset weights with a bias placing head h's points on a ring in direction 2*pi*h/M (point p at
        distance p+1, in units of the square's half side), uniform attention, xavier projections."""
        nn.init.constant_(self.sampling_offsets.weight, 0.0)
        thetas = torch.arange(self.n_heads, dtype=torch.float32) * (2.0 * math.pi / self.n_heads)
        directions = torch.stack([thetas.cos(), thetas.sin()], -1)
        directions = directions / directions.abs().max(-1, keepdim=True)[0]
        grid = directions.view(self.n_heads, 1, 1, 2).repeat(1, self.n_levels, self.n_points, 1)
        grid = grid * torch.arange(1, self.n_points + 1, dtype=torch.float32).view(1, 1, -1, 1)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.view(-1))
        nn.init.constant_(self.attention_weights.weight, 0.0)
        nn.init.constant_(self.attention_weights.bias, 0.0)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.constant_(self.value_proj.bias, 0.0)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.constant_(self.output_proj.bias, 0.0)

    def forward(
        self,
        query: torch.Tensor,
        reference_points: torch.Tensor,
        input_flatten: torch.Tensor,
        input_spatial_shapes: torch.Tensor,
        input_level_start_index: torch.Tensor,
        input_padding_mask: Optional[torch.Tensor] = None,
        return_sampling: bool = False,
    ) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Attend from every query to P points per head and level around its reference.

        Args:
            query: [N, Lq, C].
            reference_points: [N, Lq, L, 2] points (x, y) in [0, 1] (top-left (0, 0), padding area included),
                or [N, Lq, L, 4] boxes (cx, cy, w, h): points are placed at ``xy + offset / P * wh * 0.5``.
            input_flatten: [N, S, C], S = sum of H_l * W_l, levels flattened one after the other.
            input_spatial_shapes: [L, 2] int64 (H_l, W_l).
            input_level_start_index: [L] int64, start of each level along S.
            input_padding_mask: [N, S] bool, True at padding positions (their values are zeroed).
            return_sampling: also return the sampling locations and attention weights.

        Returns:
            output [N, Lq, C]; with ``return_sampling`` the triple (output, sampling_locations
            [N, Lq, M, L, P, 2], attention_weights [N, Lq, M, L, P]) as the original module returns.
        """
        n, len_q, _ = query.shape
        _, len_in, _ = input_flatten.shape
        covered = int((input_spatial_shapes[:, 0] * input_spatial_shapes[:, 1]).sum())
        if covered != len_in:
            raise ValueError(f"input_spatial_shapes cover {covered} positions but input_flatten has {len_in}")

        value = self.value_proj(input_flatten)
        if input_padding_mask is not None:
            value = value.masked_fill(input_padding_mask[..., None], 0.0)
        value = value.view(n, len_in, self.n_heads, self.d_model // self.n_heads)

        offsets = self.sampling_offsets(query).view(n, len_q, self.n_heads, self.n_levels, self.n_points, 2)
        attention_weights = self.attention_weights(query).view(n, len_q, self.n_heads, self.n_levels * self.n_points)
        attention_weights = F.softmax(attention_weights, -1).view(n, len_q, self.n_heads, self.n_levels, self.n_points)
        sampling_locations = self._sampling_locations(reference_points, offsets, input_spatial_shapes)

        output = ms_deform_attn(value, input_spatial_shapes, input_level_start_index, sampling_locations,
                                attention_weights, self.im2col_step)
        output = self.output_proj(output)
        if return_sampling:
            return output, sampling_locations, attention_weights
        return output

    def _sampling_locations(self, reference_points: torch.Tensor, offsets: torch.Tensor,
                            spatial_shapes: torch.Tensor) -> torch.Tensor:
        """[N, Lq, M, L, P, 2] locations from references [N, Lq, L, 2 or 4] and offsets [N, Lq, M, L, P, 2]."""
        if reference_points.shape[-1] == 2:
            # offsets are in pixels of each level: normalise by (W, H)
            normalizer = torch.stack([spatial_shapes[..., 1], spatial_shapes[..., 0]], -1)
            return reference_points[:, :, None, :, None, :] + offsets / normalizer[None, None, None, :, None, :]
        if reference_points.shape[-1] == 4:
            return (reference_points[:, :, None, :, None, :2]
                    + offsets / self.n_points * reference_points[:, :, None, :, None, 2:] * 0.5)
        raise ValueError(f"last dim of reference_points must be 2 or 4, got {reference_points.shape[-1]}")
