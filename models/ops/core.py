"""Pure-PyTorch multi-scale deformable attention (the reference path, runs on any device).

Math (Deformable-DETR): for every query, head, level and point, bilinearly sample the level's value map at
the sampling location (x, y in [0, 1], top-left (0, 0), pixel centres at (i + 0.5) / size, zero outside the
map) and sum the samples weighted by the attention weights.  ``F.grid_sample`` with ``align_corners=False``
and ``padding_mode='zeros'`` implements exactly this sampling.
"""
from typing import List, Tuple

import torch
import torch.nn.functional as F

__all__ = ["ms_deform_attn_core_pytorch", "check_ms_deform_attn_inputs"]


def check_ms_deform_attn_inputs(
    value: torch.Tensor,
    spatial_shapes: torch.Tensor,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> None:
    """Raise ``ValueError`` when the shapes of the op's inputs do not fit together.

    Only shapes are checked (no device synchronisation): value [N, S, M, D], spatial_shapes [L, 2],
    sampling_locations [N, Lq, M, L, P, 2], attention_weights [N, Lq, M, L, P].
    """
    if value.dim() != 4:
        raise ValueError(f"value must be [N, S, n_heads, d_head], got shape {tuple(value.shape)}")
    if spatial_shapes.dim() != 2 or spatial_shapes.shape[1] != 2:
        raise ValueError(f"spatial_shapes must be [n_levels, 2] (H, W), got shape {tuple(spatial_shapes.shape)}")
    if spatial_shapes.dtype != torch.int64:
        raise ValueError(f"spatial_shapes must be int64, got {spatial_shapes.dtype}")
    if sampling_locations.dim() != 6 or sampling_locations.shape[-1] != 2:
        raise ValueError(
            "sampling_locations must be [N, Lq, n_heads, n_levels, n_points, 2], "
            f"got shape {tuple(sampling_locations.shape)}"
        )
    n, _, n_heads, _ = value.shape
    n_levels = spatial_shapes.shape[0]
    expected_prefix = (n, sampling_locations.shape[1], n_heads, n_levels)
    if tuple(sampling_locations.shape[:4]) != expected_prefix:
        raise ValueError(
            f"sampling_locations shape {tuple(sampling_locations.shape)} does not match "
            f"(N, Lq, n_heads, n_levels) = {expected_prefix} from value and spatial_shapes"
        )
    if tuple(attention_weights.shape) != tuple(sampling_locations.shape[:5]):
        raise ValueError(
            f"attention_weights shape {tuple(attention_weights.shape)} must equal "
            f"sampling_locations shape without the last dim {tuple(sampling_locations.shape[:5])}"
        )


def _level_sizes(spatial_shapes: torch.Tensor, num_values: int) -> List[Tuple[int, int]]:
    """(H, W) of every level as Python ints; checks that the levels cover the S value positions."""
    sizes = [(int(h), int(w)) for h, w in spatial_shapes.tolist()]
    total = sum(h * w for h, w in sizes)
    if total != num_values:
        raise ValueError(f"spatial_shapes cover {total} positions (sum of H*W) but value has S={num_values}")
    return sizes


def ms_deform_attn_core_pytorch(
    value: torch.Tensor,
    spatial_shapes: torch.Tensor,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """Multi-scale deformable attention with ``F.grid_sample`` (differentiable in all float inputs).

    Args:
        value: [N, S, M, D] values of all levels, flattened level after level (S = sum of H_l * W_l).
        spatial_shapes: [L, 2] int64, (H_l, W_l) of every level.
        sampling_locations: [N, Lq, M, L, P, 2], (x, y) normalised to [0, 1] per level; outside reads zeros.
        attention_weights: [N, Lq, M, L, P], weights of the samples (usually a softmax over L * P).

    Returns:
        [N, Lq, M * D], heads concatenated along the last dimension.
    """
    check_ms_deform_attn_inputs(value, spatial_shapes, sampling_locations, attention_weights)
    n, num_values, n_heads, d_head = value.shape
    _, len_q, _, n_levels, n_points, _ = sampling_locations.shape
    level_sizes = _level_sizes(spatial_shapes, num_values)

    value_per_level = value.split([h * w for h, w in level_sizes], dim=1)
    # grid_sample expects coordinates in [-1, 1]
    sampling_grids = 2 * sampling_locations - 1
    sampled_per_level = []
    for level, (h, w) in enumerate(level_sizes):
        # [N, H*W, M, D] -> [N*M, D, H, W]
        value_map = value_per_level[level].flatten(2).transpose(1, 2).reshape(n * n_heads, d_head, h, w)
        # [N, Lq, M, P, 2] -> [N*M, Lq, P, 2]
        grid = sampling_grids[:, :, :, level].transpose(1, 2).flatten(0, 1)
        # [N*M, D, Lq, P]
        sampled_per_level.append(
            F.grid_sample(value_map, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        )
    # [N, Lq, M, L, P] -> [N*M, 1, Lq, L*P]
    weights = attention_weights.transpose(1, 2).reshape(n * n_heads, 1, len_q, n_levels * n_points)
    # [N*M, D, Lq, L, P] -> [N*M, D, Lq, L*P] -> [N*M, D, Lq]
    output = (torch.stack(sampled_per_level, dim=-2).flatten(-2) * weights).sum(-1)
    return output.view(n, n_heads * d_head, len_q).transpose(1, 2).contiguous()
