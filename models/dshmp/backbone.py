"""DsHmp's backbone: the detection Swin of ``backbones/swin.py`` with language fused into every stage (PWAM, as LAVT).

After the blocks of stage i, ``fusion`` (PWAM) mixes the visual tokens with the RoBERTa words; the stage output
``res{i+2}`` is ``norm{i}`` of the fusion output (not of the Swin features), and the next stage receives
``PatchMerging(x + res_gate(fused) * fused)``. Parameter names follow the released checkpoint
(``backbone.layers.{i}.fusion.*``, ``backbone.layers.{i}.res_gate.*``; no gate in the last stage).
"""
from typing import List

import torch
import torch.nn.functional as F
from torch import nn

from ..backbones.swin import SwinTransformer

# The released model's 2-D Swin-T (Mask2Former COCO initialisation; drop-path 0.3).
SWIN_TINY = dict(embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24], window_size=7, drop_path_rate=0.3)
ATTENTION_MASK_FILL = 1e4


class SpatialImageLanguageAttention(nn.Module):
    """Visual tokens attend to the words: query InstanceNorm1d(Conv1d(x)), key / value Conv1d(words) x mask,
    softmax over words with ``1e4 * mask - 1e4`` added, output InstanceNorm1d(Conv1d(attended))."""

    def __init__(self, v_in_channels: int, l_in_channels: int, key_channels: int, value_channels: int,
                 out_channels: int, num_heads: int = 1):
        super().__init__()
        self.key_channels = key_channels
        self.value_channels = value_channels
        self.num_heads = num_heads
        self.f_key = nn.Sequential(nn.Conv1d(l_in_channels, key_channels, kernel_size=1))
        self.f_query = nn.Sequential(nn.Conv1d(v_in_channels, key_channels, kernel_size=1),
                                     nn.InstanceNorm1d(key_channels))
        self.f_value = nn.Sequential(nn.Conv1d(l_in_channels, value_channels, kernel_size=1))
        self.W = nn.Sequential(nn.Conv1d(value_channels, out_channels, kernel_size=1), nn.InstanceNorm1d(out_channels))

    def forward(self, x: torch.Tensor, words: torch.Tensor, word_mask: torch.Tensor) -> torch.Tensor:
        """x [B, HW, Cv], words [B, Cl, L], word_mask [B, L, 1] (1 = word) -> [B, HW, value_channels]."""
        b, hw = x.shape[:2]
        heads = self.num_heads
        mask = word_mask.permute(0, 2, 1)  # [B, 1, L]
        query = self.f_query(x.permute(0, 2, 1)).permute(0, 2, 1)
        key = self.f_key(words) * mask
        value = self.f_value(words) * mask
        length = value.shape[-1]
        query = query.reshape(b, hw, heads, self.key_channels // heads).permute(0, 2, 1, 3)
        key = key.reshape(b, heads, self.key_channels // heads, length)
        value = value.reshape(b, heads, self.value_channels // heads, length)
        sim = (self.key_channels ** -0.5) * torch.matmul(query, key)
        sim = F.softmax(sim + (ATTENTION_MASK_FILL * mask.unsqueeze(1) - ATTENTION_MASK_FILL), dim=-1)
        out = torch.matmul(sim, value.permute(0, 1, 3, 2)).permute(0, 2, 1, 3).reshape(b, hw, self.value_channels)
        return self.W(out.permute(0, 2, 1)).permute(0, 2, 1)


class PWAM(nn.Module):
    """Pixel-word attention: ``project_mm(vis_project(x) * attend(x, words))`` (1x1 Conv1d + GELU each)."""

    def __init__(self, dim: int, text_dim: int, num_heads: int = 1, dropout: float = 0.0):
        super().__init__()
        self.vis_project = nn.Sequential(nn.Conv1d(dim, dim, 1), nn.GELU(), nn.Dropout(dropout))
        self.image_lang_att = SpatialImageLanguageAttention(dim, text_dim, dim, dim, dim, num_heads)
        self.project_mm = nn.Sequential(nn.Conv1d(dim, dim, 1), nn.GELU(), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, words: torch.Tensor, word_mask: torch.Tensor) -> torch.Tensor:
        """x [B, HW, C] -> [B, HW, C]."""
        vis = self.vis_project(x.permute(0, 2, 1))
        lang = self.image_lang_att(x, words, word_mask).permute(0, 2, 1)
        return self.project_mm(vis * lang).permute(0, 2, 1)


def residual_gate(dim: int) -> nn.Sequential:
    """Linear-ReLU-Linear-Tanh without biases, zero-initialised (the fusion starts switched off)."""
    gate = nn.Sequential(nn.Linear(dim, dim, bias=False), nn.ReLU(), nn.Linear(dim, dim, bias=False), nn.Tanh())
    nn.init.zeros_(gate[0].weight)
    nn.init.zeros_(gate[2].weight)
    return gate


class LanguageSwin(SwinTransformer):
    """Swin with a PWAM after every stage. ``forward(frames, words, word_mask)``: frames [N, 3, H, W] (H, W
    multiples of 32), words [N, text_dim, L] (RoBERTa's last hidden states), word_mask [N, L, 1] (1 = word) ->
    4 maps [N, C_i, H / 2^(i+2), W / 2^(i+2)]."""

    def __init__(self, text_dim: int, **config):
        super().__init__(**config)
        if tuple(self.out_indices) != tuple(range(len(self.layers))):
            raise ValueError("DsHmp's backbone outputs every stage (out_indices 0..3)")
        for stage in self.layers:
            dim = stage.blocks[0].norm1.normalized_shape[0]
            stage.fusion = PWAM(dim, text_dim)
            stage.res_gate = residual_gate(dim) if stage.downsample is not None else None

    def forward(self, frames: torch.Tensor, words: torch.Tensor, word_mask: torch.Tensor) -> List[torch.Tensor]:
        x = self.pos_drop(self.patch_embed(frames))
        outputs = []
        for i, stage in enumerate(self.layers):
            x = stage(x)
            n, h, w, c = x.shape
            fused = stage.fusion(x.reshape(n, h * w, c), words, word_mask).reshape(n, h, w, c)
            outputs.append(getattr(self, f"norm{i}")(fused).permute(0, 3, 1, 2).contiguous())
            if stage.downsample is not None:
                x = stage.downsample(x + stage.res_gate(fused) * fused)
        return outputs
