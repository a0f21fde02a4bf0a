"""ReferFormer's cross-modal FPN: stride-4 mask features from encoder memory + text.

Top-down over the encoder memory at strides 32/16/8 and the stride-4 backbone level; at every
scale a vision-language block (self-attention on a downsampled grid, cross-attention to the
words, FFN) precedes the FPN merge.
"""
from typing import List, Optional

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from rvos.util.misc import NestedTensor

from .layers import ConvNormAct, c2_xavier_fill, with_pos


class VisionLanguageBlock(nn.Module):
    """Post-norm block on visual tokens [T*H*W, B, C]: self-attn (optionally on a grid downsampled
    by ``sr_ratio``), cross-attn to text, FFN."""

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048, dropout: float = 0.1,
                 sr_ratio: int = 1):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.multihead_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)
        self.sr_ratio = sr_ratio

    def _self_attention(self, tgt, query_pos, t, h, w, key_padding_mask):
        q = k = with_pos(tgt, query_pos)
        if self.sr_ratio == 1:
            return self.self_attn(q, k, value=tgt, key_padding_mask=key_padding_mask)[0]
        b = tgt.shape[1]
        small = (int(h / self.sr_ratio), int(w / self.sr_ratio))

        def shrink(x):
            x = rearrange(x, "(t h w) b c -> (b t) c h w", t=t, h=h, w=w)
            return rearrange(F.interpolate(x, size=small, mode="nearest"), "(b t) c h w -> (t h w) b c", t=t)

        mask = F.interpolate(key_padding_mask.reshape(b * t, h, w)[None].float(), size=small, mode="nearest")
        mask = mask.bool()[0].reshape(b, t, *small).flatten(1)
        out = self.self_attn(shrink(q), shrink(k), value=shrink(tgt), key_padding_mask=mask)[0]
        out = rearrange(out, "(t h w) b c -> (b t) c h w", t=t, h=small[0], w=small[1])
        out = F.interpolate(out, size=(h, w), mode="bilinear", align_corners=False)
        return rearrange(out, "(b t) c h w -> (t h w) b c", t=t)

    def forward(self, tgt, memory, t: int, h: int, w: int,
                tgt_key_padding_mask: Optional[torch.Tensor] = None,
                memory_key_padding_mask: Optional[torch.Tensor] = None,
                pos: Optional[torch.Tensor] = None, query_pos: Optional[torch.Tensor] = None):
        """tgt/query_pos [T*H*W, B, C], tgt mask [B, T*H*W]; memory/pos [L, B, C], mask [B, L]."""
        tgt = self.norm1(tgt + self.dropout1(self._self_attention(tgt, query_pos, t, h, w, tgt_key_padding_mask)))
        cross = self.multihead_attn(query=with_pos(tgt, query_pos), key=with_pos(memory, pos), value=memory,
                                    key_padding_mask=memory_key_padding_mask)[0]
        tgt = self.norm2(tgt + self.dropout2(cross))
        ffn = self.linear2(self.dropout(F.relu(self.linear1(tgt))))
        return self.norm3(tgt + self.dropout3(ffn))


class CrossModalFPNDecoder(nn.Module):
    """Stride-4 mask features [N, mask_dim, H/4, W/4] from 4 visual levels and the words.

    Module names follow the original (``adapter_i``, ``layer_i``, ``cross_attn_i`` for the
    stride-4..32 levels, ``mask_features``) so public checkpoints load unchanged.
    """

    SR_RATIOS = (8, 4, 2, 1)

    def __init__(self, feature_channels: List[int], conv_dim: int, mask_dim: int, dim_feedforward: int = 2048,
                 nhead: int = 8, text_pos: nn.Module = None):
        super().__init__()
        for idx, in_channels in enumerate(feature_channels):
            stage = idx + 1
            lateral = ConvNormAct(in_channels, conv_dim, kernel_size=1, bias=False,
                                  norm=nn.GroupNorm(8, conv_dim))
            output = ConvNormAct(conv_dim, conv_dim, kernel_size=3, padding=1, bias=False,
                                 norm=nn.GroupNorm(8, conv_dim), activation=F.relu)
            c2_xavier_fill(lateral)
            c2_xavier_fill(output)
            self.add_module(f"adapter_{stage}", lateral)
            self.add_module(f"layer_{stage}", output)
        self.mask_features = ConvNormAct(conv_dim, mask_dim, kernel_size=3, padding=1)
        c2_xavier_fill(self.mask_features)
        for idx in range(len(feature_channels)):
            block = VisionLanguageBlock(conv_dim, nhead, dim_feedforward=dim_feedforward, sr_ratio=self.SR_RATIOS[idx])
            for p in block.parameters():
                if p.dim() > 1:
                    nn.init.xavier_uniform_(p)
            self.add_module(f"cross_attn_{idx + 1}", block)
        self.num_levels = len(feature_channels)
        self.text_pos = text_pos

    def _stage(self, stage: int, x, mask, pos, text, text_mask, text_pos, num_frames):
        n, _, h, w = pos.shape
        b = n // num_frames
        vision = rearrange(getattr(self, f"adapter_{stage}")(x), "(b t) c h w -> (t h w) b c", b=b, t=num_frames)
        vision_pos = rearrange(pos, "(b t) c h w -> (t h w) b c", b=b, t=num_frames)
        vision_mask = rearrange(mask, "(b t) h w -> b (t h w)", b=b, t=num_frames)
        fused = getattr(self, f"cross_attn_{stage}")(
            tgt=vision, memory=text, t=num_frames, h=h, w=w, tgt_key_padding_mask=vision_mask,
            memory_key_padding_mask=text_mask, pos=text_pos, query_pos=vision_pos)
        return rearrange(fused, "(t h w) b c -> (b t) c h w", t=num_frames, h=h, w=w)

    def forward(self, features: List[NestedTensor], text_features: NestedTensor, pos: List[torch.Tensor],
                memory: List[torch.Tensor], nf: int) -> torch.Tensor:
        """features: backbone levels (stride 4..32), tensors [N, C_l, H_l, W_l] with masks; pos: their position
        encodings [N, C, H_l, W_l]; memory: encoder maps at strides 8/16/32; text_features: words
        [B, L, C] + mask [B, L]; nf: frames per video (N = B * nf). Returns [N, mask_dim, H/4, W/4]."""
        text_pos = self.text_pos(text_features).permute(2, 0, 1)
        text, text_mask = text_features.decompose()
        text = text.permute(1, 0, 2)
        y = None
        inputs = [(features[0].tensors, features[0].mask, pos[0])]
        inputs += [(mem, f.mask, p) for mem, f, p in zip(memory, features[1:], pos[1:])]
        for stage in range(self.num_levels, 0, -1):
            x, mask, p = inputs[stage - 1]
            cur = self._stage(stage, x, mask, p, text, text_mask, text_pos, nf)
            if y is not None:
                cur = cur + F.interpolate(y, size=cur.shape[-2:], mode="nearest")
            y = getattr(self, f"layer_{stage}")(cur)
        return self.mask_features(y)
