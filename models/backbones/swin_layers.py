"""Window-attention building blocks shared by the 2-D Swin and the Video-Swin backbones.

Written here rather than taken from timm/torchvision because the public ReferFormer-family
checkpoints depend on the mmdet / Video-Swin layout and numerics: zero padding to window
multiples after ``norm1`` (padded tokens are attended to in unshifted windows), Video-Swin's
window shrink with zeroed shift per dimension, the bias lookup
``relative_position_index[:N, :N]`` of the FULL window for shrunk windows, per-stage outputs
before PatchMerging, and key names (``attn.relative_position_index`` is a persistent buffer).

Every tensor is channels-last with any number of spatial dims: [B, *S, C], S = (H, W) for
images or (T, H, W) for videos.
"""
import math
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from timm.layers import DropPath, Mlp, trunc_normal_
from torch import nn

SHIFT_MASK_VALUE = -100.0


def stochastic_depth_rates(drop_path_rate: float, depths: Sequence[int]) -> List[List[float]]:
    """Per-stage lists of DropPath rates rising linearly from 0 to ``drop_path_rate`` over all blocks."""
    rates = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").tolist()
    starts = [sum(depths[:i]) for i in range(len(depths) + 1)]
    return [rates[starts[i]:starts[i + 1]] for i in range(len(depths))]


def check_stage_config(family: str, depths: Sequence[int], num_heads: Sequence[int]) -> None:
    """ValueError unless there is one head count per stage."""
    if len(depths) != len(num_heads) or not depths:
        raise ValueError(f"{family} config: depths {list(depths)} and num_heads {list(num_heads)} "
                         "must be non-empty lists of equal length")


def window_partition(x: torch.Tensor, window: Sequence[int]) -> torch.Tensor:
    """[B, *S, C] with S divisible by ``window`` -> windows [B * num_windows, prod(window), C]."""
    batch, *spatial, channels = x.shape
    k = len(window)
    grid_and_window = [v for size, w in zip(spatial, window) for v in (size // w, w)]
    x = x.reshape(batch, *grid_and_window, channels)
    order = [0] + [1 + 2 * i for i in range(k)] + [2 + 2 * i for i in range(k)] + [2 * k + 1]
    return x.permute(order).reshape(-1, math.prod(window), channels)


def window_reverse(windows: torch.Tensor, window: Sequence[int], spatial: Sequence[int]) -> torch.Tensor:
    """Windows [B * num_windows, prod(window), C] -> [B, *spatial, C] (inverse of ``window_partition``)."""
    k = len(window)
    grid = [size // w for size, w in zip(spatial, window)]
    channels = windows.shape[-1]
    x = windows.reshape(-1, *grid, *window, channels)
    order = [0] + [v for i in range(k) for v in (1 + i, 1 + k + i)] + [2 * k + 1]
    return x.permute(order).reshape(-1, *spatial, channels)


def relative_position_index(window: Sequence[int]) -> torch.Tensor:
    """[N, N] int64 index into the (2*w_0-1)*(2*w_1-1)*... bias table, N = prod(window)."""
    coords = torch.stack(torch.meshgrid(*[torch.arange(w) for w in window], indexing="ij")).flatten(1)
    relative = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)
    index = torch.zeros(relative.shape[:2], dtype=torch.long, device=relative.device)
    for dim, w in enumerate(window):
        stride = math.prod(2 * v - 1 for v in window[dim + 1:])
        index += (relative[:, :, dim] + w - 1) * stride
    return index


def shifted_window_attention_mask(padded: Sequence[int], window: Sequence[int], shift: Sequence[int],
                                  device) -> torch.Tensor:
    """Additive mask [num_windows, N, N] (0 or -100) that keeps cyclically shifted regions apart.

    Along a dim with shift s > 0 the padded extent P splits into [0, P-w), [P-w, P-s), [P-s, P);
    along a dim with shift 0 it is one region (what the original slice loops produce).
    """
    region = torch.zeros(tuple(padded), device=device)
    for dim, (size, w, s) in enumerate(zip(padded, window, shift)):
        if s == 0:
            continue
        ids = torch.zeros(size, device=device)
        ids[size - w:size - s] = 1
        ids[size - s:] = 2
        shape = [1] * len(padded)
        shape[dim] = size
        region = region + ids.view(shape) * 3 ** dim
    windows = window_partition(region[None, ..., None], window).squeeze(-1)
    different = (windows[:, None, :] - windows[:, :, None]) != 0
    return torch.zeros(different.shape, device=device).masked_fill(different, SHIFT_MASK_VALUE)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside windows with a learned relative-position bias.

    The bias table covers the full configured ``window_size``; a smaller (shrunk) window of
    N tokens uses ``relative_position_index[:N, :N]`` exactly as the original Video-Swin code.
    """

    def __init__(self, dim: int, window_size: Sequence[int], num_heads: int, qkv_bias: bool = True,
                 qk_scale: Optional[float] = None, attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__()
        self.dim = dim
        self.window_size = tuple(window_size)
        self.num_heads = num_heads
        self.scale = qk_scale or (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros(math.prod(2 * w - 1 for w in self.window_size), num_heads))
        self.register_buffer("relative_position_index", relative_position_index(self.window_size))
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        trunc_normal_(self.relative_position_bias_table, std=0.02)

    def relative_position_bias(self, num_tokens: int) -> torch.Tensor:
        """[num_heads, N, N] bias for windows of N tokens."""
        index = self.relative_position_index[:num_tokens, :num_tokens].reshape(-1)
        bias = self.relative_position_bias_table[index].view(num_tokens, num_tokens, self.num_heads)
        return bias.permute(2, 0, 1)

    def forward(self, windows: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """windows [B * nW, N, C], mask [nW, N, N] additive or None -> [B * nW, N, C]."""
        total, n, channels = windows.shape
        qkv = self.qkv(windows).reshape(total, n, 3, self.num_heads, channels // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        attn_bias = self.relative_position_bias(n).unsqueeze(0)
        if mask is not None:
            num_windows = mask.shape[0]
            attn_bias = attn_bias + mask.unsqueeze(1)
            attn_bias = attn_bias.unsqueeze(0).expand(total // num_windows, -1, -1, -1, -1)
            attn_bias = attn_bias.reshape(total, self.num_heads, n, n)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_bias.to(q.dtype), dropout_p=self.attn_drop if self.training else 0.0,
            scale=self.scale)
        out = out.transpose(1, 2).reshape(total, n, channels)
        return self.proj_drop(self.proj(out))


class SwinBlock(nn.Module):
    """(Shifted-)window attention + MLP, both pre-norm residual, on [B, *S, C].

    The window and shift are chosen per call by the stage (they depend on the input extent for
    Video-Swin). ``norm1`` runs before the zero padding to window multiples.
    """

    def __init__(self, dim: int, num_heads: int, window_size: Sequence[int], mlp_ratio: float = 4.0,
                 qkv_bias: bool = True, qk_scale: Optional[float] = None, drop: float = 0.0,
                 attn_drop: float = 0.0, drop_path: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window_size, num_heads, qkv_bias=qkv_bias, qk_scale=qk_scale,
                                    attn_drop=attn_drop, proj_drop=drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(in_features=dim, hidden_features=int(dim * mlp_ratio), act_layer=nn.GELU, drop=drop)

    def forward(self, x: torch.Tensor, window: Tuple[int, ...], shift: Tuple[int, ...],
                shift_mask: Optional[torch.Tensor]) -> torch.Tensor:
        """x [B, *S, C]; ``shift_mask`` [nW, N, N] is used only when some shift is non-zero."""
        spatial = x.shape[1:-1]
        dims = tuple(range(1, len(spatial) + 1))
        shifted = any(s > 0 for s in shift)
        shortcut = x
        x = self.norm1(x)
        pads = [(w - size % w) % w for size, w in zip(spatial, window)]
        if any(pads):
            x = F.pad(x, [0, 0] + [v for p in reversed(pads) for v in (0, p)])
        padded = x.shape[1:-1]
        if shifted:
            x = torch.roll(x, shifts=[-s for s in shift], dims=dims)
        windows = self.attn(window_partition(x, window), mask=shift_mask if shifted else None)
        x = window_reverse(windows, window, padded)
        if shifted:
            x = torch.roll(x, shifts=list(shift), dims=dims)
        if any(pads):
            x = x[(slice(None),) + tuple(slice(0, size) for size in spatial)].contiguous()
        x = shortcut + self.drop_path(x)
        return x + self.drop_path(self.mlp(self.norm2(x)))


class SwinStage(nn.Module):
    """A stack of SwinBlocks alternating unshifted / shifted windows (shift = window // 2).

    ``shrink_window`` (Video-Swin): along a dim whose extent is <= the window, the window becomes
    the extent and that dim's shift becomes 0. Otherwise (2-D Swin) inputs are always padded to
    the configured window. ``downsample`` (2-D Swin layout ``layers.{i}.downsample``) is NOT applied
    here: the backbone applies it after taking the stage output.
    """

    def __init__(self, dim: int, depth: int, num_heads: int, window_size: Sequence[int], drop_path: Sequence[float],
                 mlp_ratio: float = 4.0, qkv_bias: bool = True, qk_scale: Optional[float] = None,
                 drop: float = 0.0, attn_drop: float = 0.0, shrink_window: bool = False,
                 downsample: bool = False, use_checkpoint: bool = False):
        super().__init__()
        self.window_size = tuple(window_size)
        self.shift_size = tuple(w // 2 for w in self.window_size)
        self.shrink_window = shrink_window
        self.use_checkpoint = use_checkpoint
        self.blocks = nn.ModuleList([
            SwinBlock(dim, num_heads, self.window_size, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, qk_scale=qk_scale,
                      drop=drop, attn_drop=attn_drop, drop_path=drop_path[i])
            for i in range(depth)])
        self.downsample = PatchMerging(dim) if downsample else None

    def window_and_shift(self, spatial: Sequence[int]) -> Tuple[Tuple[int, ...], Tuple[int, ...]]:
        """Window and shift (of the shifted blocks) used for an input of extent ``spatial``."""
        if not self.shrink_window:
            return self.window_size, self.shift_size
        window = tuple(size if size <= w else w for size, w in zip(spatial, self.window_size))
        shift = tuple(0 if size <= w else s for size, w, s in zip(spatial, self.window_size, self.shift_size))
        return window, shift

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, *S, C] -> [B, *S, C]."""
        spatial = x.shape[1:-1]
        window, shift = self.window_and_shift(spatial)
        no_shift = (0,) * len(shift)
        shift_mask = None
        if any(s > 0 for s in shift):
            padded = [math.ceil(size / w) * w for size, w in zip(spatial, window)]
            shift_mask = shifted_window_attention_mask(padded, window, shift, x.device)
        for i, block in enumerate(self.blocks):
            block_shift = shift if i % 2 == 1 else no_shift
            if self.use_checkpoint and torch.is_grad_enabled():
                x = torch.utils.checkpoint.checkpoint(block, x, window, block_shift, shift_mask, use_reentrant=False)
            else:
                x = block(x, window, block_shift, shift_mask)
        return x


class PatchMerging(nn.Module):
    """2x2 neighbourhood merge of the last two spatial dims: [..., H, W, C] -> [..., ceil(H/2), ceil(W/2), 2C].

    Odd H / W are zero-padded at the bottom / right; features are concatenated in the order
    (0,0), (1,0), (0,1), (1,1), then LayerNorm(4C) and a bias-free Linear(4C -> 2C).
    """

    def __init__(self, dim: int):
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-3:-1]
        if height % 2 or width % 2:
            x = F.pad(x, (0, 0, 0, width % 2, 0, height % 2))
        x = torch.cat([x[..., 0::2, 0::2, :], x[..., 1::2, 0::2, :], x[..., 0::2, 1::2, :], x[..., 1::2, 1::2, :]], -1)
        return self.reduction(self.norm(x))


class PatchEmbed(nn.Module):
    """Non-overlapping patch projection: [B, C_in, *S] -> channels-last tokens [B, *S/patch, C].

    ``patch_size`` of length 2 uses a Conv2d (images), of length 3 a Conv3d (videos, (T, H, W)).
    The input is zero-padded at the end of each dim to a multiple of the patch; optional LayerNorm.
    """

    def __init__(self, patch_size: Sequence[int], in_chans: int = 3, embed_dim: int = 96, patch_norm: bool = True):
        super().__init__()
        self.patch_size = tuple(patch_size)
        conv = {2: nn.Conv2d, 3: nn.Conv3d}[len(self.patch_size)]
        self.proj = conv(in_chans, embed_dim, kernel_size=self.patch_size, stride=self.patch_size)
        self.norm = nn.LayerNorm(embed_dim) if patch_norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spatial = x.shape[2:]
        pads = [(p - size % p) % p for size, p in zip(spatial, self.patch_size)]
        if any(pads):
            x = F.pad(x, [v for p in reversed(pads) for v in (0, p)])
        x = self.proj(x).movedim(1, -1)
        return self.norm(x) if self.norm is not None else x
