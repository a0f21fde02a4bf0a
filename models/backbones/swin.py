"""2-D Swin Transformer in the mmdet layout used by ReferFormer / MUTR (``models/swin_transformer.py``).

Own implementation, not timm's: the checkpoints need PatchMerging at the END of stage i
(``layers.{i}.downsample``), per-level output norms ``norm0..norm3`` and mmdet's zero padding of
every stage input to window multiples (windows never shrink; shift mask on the padded map).
Frames are processed independently.
"""
from typing import List, Sequence

import torch
from timm.layers import trunc_normal_
from torch import nn

from .swin_layers import PatchEmbed, SwinStage, check_stage_config, stochastic_depth_rates

SWIN_CONFIGS = {
    "swin_t_p4w7": dict(embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24], drop_path_rate=0.2),
    "swin_s_p4w7": dict(embed_dim=96, depths=[2, 2, 18, 2], num_heads=[3, 6, 12, 24], drop_path_rate=0.2),
    "swin_b_p4w7": dict(embed_dim=128, depths=[2, 2, 18, 2], num_heads=[4, 8, 16, 32], drop_path_rate=0.3),
    "swin_l_p4w7": dict(embed_dim=192, depths=[2, 2, 18, 2], num_heads=[6, 12, 24, 48], drop_path_rate=0.3),
}
SWIN_COMMON = dict(patch_size=4, window_size=7, mlp_ratio=4.0, qkv_bias=True, qk_scale=None, drop_rate=0.0,
                   attn_drop_rate=0.0, ape=False, patch_norm=True, out_indices=[0, 1, 2, 3], use_checkpoint=False)


def _init_weights(module: nn.Module) -> None:
    """The original ``init_weights``: trunc-normal(0.02) Linear weights, zero biases, unit LayerNorms."""
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class SwinTransformer(nn.Module):
    """Hierarchical 2-D Swin; ``forward`` gives one map per ``out_indices`` stage.

    Input frames [N, 3, H, W]; output level i: [N, embed_dim * 2**i, ceil(H / (4 * 2**i)), ...]
    (stride ``patch_size * 2**i``), taken before the stage's PatchMerging and passed through ``norm{i}``.
    """

    def __init__(self, patch_size: int = 4, in_chans: int = 3, embed_dim: int = 96,
                 depths: Sequence[int] = (2, 2, 6, 2), num_heads: Sequence[int] = (3, 6, 12, 24),
                 window_size: int = 7, mlp_ratio: float = 4.0, qkv_bias: bool = True, qk_scale=None,
                 drop_rate: float = 0.0, attn_drop_rate: float = 0.0,
                 drop_path_rate: float = 0.2, ape: bool = False, patch_norm: bool = True,
                 out_indices: Sequence[int] = (0, 1, 2, 3), use_checkpoint: bool = False):
        super().__init__()
        if ape:
            raise ValueError("Swin config: ape=True (absolute position embedding) is not supported; "
                             "no ReferFormer-family model uses it")
        if not isinstance(window_size, int):
            raise ValueError(f"Swin config: window_size must be an int, got {window_size!r}")
        check_stage_config("Swin", depths, num_heads)
        num_stages = len(depths)
        self.out_indices = tuple(out_indices)
        if not self.out_indices or any(i not in range(num_stages) for i in self.out_indices):
            raise ValueError(f"Swin config: out_indices {list(out_indices)} must name stages 0..{num_stages - 1}")
        self.patch_embed = PatchEmbed((patch_size, patch_size), in_chans, embed_dim, patch_norm)
        self.pos_drop = nn.Dropout(drop_rate)
        rates = stochastic_depth_rates(drop_path_rate, depths)
        dims = [embed_dim * 2 ** i for i in range(num_stages)]
        self.layers = nn.ModuleList([
            SwinStage(dims[i], depths[i], num_heads[i], (window_size, window_size), rates[i], mlp_ratio=mlp_ratio,
                      qkv_bias=qkv_bias, qk_scale=qk_scale, drop=drop_rate, attn_drop=attn_drop_rate,
                      shrink_window=False, downsample=i < num_stages - 1, use_checkpoint=use_checkpoint)
            for i in range(num_stages)])
        for i in self.out_indices:
            self.add_module(f"norm{i}", nn.LayerNorm(dims[i]))
        self.num_channels = [dims[i] for i in self.out_indices]
        self.strides = [patch_size * 2 ** i for i in self.out_indices]
        self.apply(_init_weights)

    def forward(self, frames: torch.Tensor) -> List[torch.Tensor]:
        """frames [N, 3, H, W] -> list of [N, C_i, H_i, W_i] for i in ``out_indices``."""
        x = self.pos_drop(self.patch_embed(frames))
        outputs = []
        for i, stage in enumerate(self.layers):
            x = stage(x)
            if i in self.out_indices:
                outputs.append(getattr(self, f"norm{i}")(x).permute(0, 3, 1, 2).contiguous())
            if stage.downsample is not None:
                x = stage.downsample(x)
        return outputs
