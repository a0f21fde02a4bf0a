"""Video-Swin Transformer with per-frame outputs, as ReferFormer / SgMg / MUTR use it.

Own implementation (torchvision's swin3d has other key names and no per-stage outputs): the public
checkpoints need ReferFormer's layout and numerics -- patch (1, 4, 4) so time is never downsampled,
PatchMerging moved out of the stages to ``downsamples.{i}``, no final norm, Video-Swin's window
shrink (a dim whose extent is <= the window uses the extent and a zero shift) with the bias lookup
``relative_position_index[:N, :N]`` of the full window, and zero padding of T/H/W to window multiples.
The clip length T is read from the input, so any T works (T=1 shrinks the temporal window to 1).
"""
from typing import List, Optional, Sequence

import torch
from torch import nn

from .swin_layers import PatchEmbed, PatchMerging, SwinStage, check_stage_config, stochastic_depth_rates

VIDEO_SWIN_CONFIGS = {
    "video_swin_t_p4w7": dict(embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24]),
    "video_swin_s_p4w7": dict(embed_dim=96, depths=[2, 2, 18, 2], num_heads=[3, 6, 12, 24]),
    "video_swin_b_p4w7": dict(embed_dim=128, depths=[2, 2, 18, 2], num_heads=[4, 8, 16, 32]),
}
VIDEO_SWIN_COMMON = dict(patch_size=[1, 4, 4], window_size=[8, 7, 7], mlp_ratio=4.0, qkv_bias=True, qk_scale=None,
                         drop_rate=0.0, attn_drop_rate=0.0, drop_path_rate=0.2, patch_norm=True, use_checkpoint=False)


class VideoSwinTransformer(nn.Module):
    """Video-Swin body: clips [B, T, 3, H, W] -> per-frame maps of every stage, before PatchMerging.

    Level i: [B*T, embed_dim * 2**i, H_i, W_i] ordered (b t), stride 4 * 2**i. ``num_levels`` < number of
    stages drops the last stages (SgMg's ``--output_levels``); DropPath rates still follow all ``depths``.
    """

    def __init__(self, patch_size: Sequence[int] = (1, 4, 4), in_chans: int = 3, embed_dim: int = 96,
                 depths: Sequence[int] = (2, 2, 6, 2), num_heads: Sequence[int] = (3, 6, 12, 24),
                 window_size: Sequence[int] = (8, 7, 7), mlp_ratio: float = 4.0, qkv_bias: bool = True, qk_scale=None,
                 drop_rate: float = 0.0, attn_drop_rate: float = 0.0, drop_path_rate: float = 0.2,
                 patch_norm: bool = True, use_checkpoint: bool = False, num_levels: Optional[int] = None):
        super().__init__()
        patch_size, window_size = tuple(patch_size), tuple(window_size)
        if len(patch_size) != 3 or len(window_size) != 3:
            raise ValueError(f"Video-Swin config: patch_size {patch_size} and window_size {window_size} "
                             "must be (T, H, W)")
        if patch_size[0] != 1:
            raise ValueError(f"Video-Swin config: patch_size {patch_size} must keep time (T patch 1) "
                             "for per-frame outputs")
        check_stage_config("Video-Swin", depths, num_heads)
        num_levels = len(depths) if num_levels is None else num_levels
        if not 1 <= num_levels <= len(depths):
            raise ValueError(f"Video-Swin: num_levels {num_levels} must be in 1..{len(depths)}")
        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim, patch_norm)
        self.pos_drop = nn.Dropout(drop_rate)
        rates = stochastic_depth_rates(drop_path_rate, depths)
        dims = [embed_dim * 2 ** i for i in range(num_levels)]
        self.layers = nn.ModuleList([
            SwinStage(dims[i], depths[i], num_heads[i], window_size, rates[i], mlp_ratio=mlp_ratio, qkv_bias=qkv_bias,
                      qk_scale=qk_scale, drop=drop_rate, attn_drop=attn_drop_rate, shrink_window=True,
                      use_checkpoint=use_checkpoint)
            for i in range(num_levels)])
        self.downsamples = nn.ModuleList([PatchMerging(dims[i]) for i in range(num_levels - 1)])
        self.num_channels = dims
        self.strides = [patch_size[1] * 2 ** i for i in range(num_levels)]

    def forward(self, clips: torch.Tensor) -> List[torch.Tensor]:
        """clips [B, T, 3, H, W] -> list of [B*T, C_i, H_i, W_i]."""
        x = self.pos_drop(self.patch_embed(clips.transpose(1, 2)))
        outputs = []
        for i, stage in enumerate(self.layers):
            x = stage(x)
            outputs.append(x.flatten(0, 1).permute(0, 3, 1, 2).contiguous())
            if i < len(self.downsamples):
                x = self.downsamples[i](x)
        return outputs
