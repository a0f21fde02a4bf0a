"""DsHmp's frame-level decoder (``sem_seg_head.predictor``): Mask2Former's masked-attention decoder with static cues.

Learnable queries get ``0.1 x`` a cross-attention to the sentence's static tokens; predictions are made on them
and after every layer. Layer i (feature level ``i % 3``: strides 32, 16, 8) runs: bidirectional fusion of that
level's pixels with the words -> masked cross-attention of the queries to the FUSED pixels -> cross-attention to
the FUSED words (``cross_test``) -> self-attention -> FFN. The fused pixels and words are used in that layer only.
The normed queries of the last ``num_frame_query_layers`` layers go to the video module.
"""
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..backbones.position_encoding import PositionEmbeddingSine2D
from ..layers import MLP
from ..transformer_layers import CrossAttentionLayer, FFNLayer, SelfAttentionLayer
from .bi_attention import BiAttentionBlock

NUM_LEVELS = 3
STATIC_CUE_SCALE = 0.1
FUSION_DROPOUT = 0.1
FUSION_DROP_PATH = 0.1


def fusion_block(hidden_dim: int, dim_feedforward: int, nheads: int) -> BiAttentionBlock:
    """The decoders' BiAttentionBlock: embed ``dim_feedforward / 2``, ``nheads / 2`` heads."""
    return BiAttentionBlock(hidden_dim, hidden_dim, embed_dim=dim_feedforward // 2, num_heads=nheads // 2,
                            dropout=FUSION_DROPOUT, drop_path=FUSION_DROP_PATH)


class FusedDecoderLayers(nn.Module):
    """The decoder layers both DsHmp decoders share (names of the released checkpoint): layer i is bidirectional
    fusion of the memory with the words (``fusion_layers``) -> cross-attention to the fused memory -> cross-attention
    to the fused words (``cross_test``) -> self-attention -> FFN."""

    def __init__(self, hidden_dim: int, nheads: int, dim_feedforward: int, num_layers: int):
        super().__init__()
        self.num_layers = num_layers
        self.transformer_self_attention_layers = nn.ModuleList(
            SelfAttentionLayer(hidden_dim, nheads) for _ in range(num_layers))
        self.transformer_cross_attention_layers = nn.ModuleList(
            CrossAttentionLayer(hidden_dim, nheads) for _ in range(num_layers))
        self.transformer_ffn_layers = nn.ModuleList(FFNLayer(hidden_dim, dim_feedforward) for _ in range(num_layers))
        self.cross_test = nn.ModuleList(CrossAttentionLayer(hidden_dim, nheads) for _ in range(num_layers))
        self.fusion_layers = nn.ModuleList(fusion_block(hidden_dim, dim_feedforward, nheads)
                                           for _ in range(num_layers))

    def decoder_layer(self, i: int, output: torch.Tensor, memory: torch.Tensor, lang: torch.Tensor,
                      lang_padding: Optional[torch.Tensor], pos: Optional[torch.Tensor], query_pos: torch.Tensor,
                      attn_mask: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """queries [Q, N, C], memory [S, N, C] (position ``pos``), words [L, N, C] -> (queries, fused memory, fused
        words)."""
        memory, lang = self.fusion_layers[i](memory, lang, lang_padding)
        output = self.transformer_cross_attention_layers[i](output, memory, pos=pos, query_pos=query_pos,
                                                            attn_mask=attn_mask)
        output = self.cross_test[i](output, lang, key_padding_mask=lang_padding)
        output = self.transformer_self_attention_layers[i](output, query_pos=query_pos)
        return self.transformer_ffn_layers[i](output), memory, lang


def per_frame(x: Optional[torch.Tensor], frames: int) -> Optional[torch.Tensor]:
    """Rows of B videos repeated for each of their frames: [B, ...] -> [B * frames, ...] (video-major)."""
    return None if x is None else x.repeat_interleave(frames, dim=0)


class FrameDecoder(FusedDecoderLayers):
    """Frames' pixel features -> per-frame query predictions and frame queries.

    forward(levels, mask_features, words, word_padding, static, static_padding, frames):
        levels: 3 maps [N, C, H_l, W_l] (strides 32, 16, 8), N = B * frames (video-major);
        mask_features [N, mask_dim, H/4, W/4]; words [B, L, C] with word_padding [B, L] (True = padding);
        static tokens [B, S, C] with static_padding [B, S].
    Returns (outputs, frame_queries): ``pred_logits`` [N, Q, 2], ``pred_masks`` [N, Q, H/4, W/4] of the last layer
    and ``aux_outputs`` (initial queries first); frame_queries [K, N, Q, C] of the last K layers.
    """

    def __init__(self, hidden_dim: int, num_queries: int, nheads: int, dim_feedforward: int, num_layers: int,
                 mask_dim: int, num_classes: int = 1, num_frame_query_layers: int = 3):
        super().__init__(hidden_dim, nheads, dim_feedforward, num_layers)
        self.num_heads = nheads
        self.num_frame_query_layers = num_frame_query_layers
        self.pe_layer = PositionEmbeddingSine2D(hidden_dim // 2, normalize=True, offset=0.0)
        self.decoder_norm = nn.LayerNorm(hidden_dim)
        self.query_feat = nn.Embedding(num_queries, hidden_dim)
        self.query_embed = nn.Embedding(num_queries, hidden_dim)
        self.level_embed = nn.Embedding(NUM_LEVELS, hidden_dim)
        self.class_embed = nn.Linear(hidden_dim, num_classes + 1)
        self.mask_embed = MLP(hidden_dim, hidden_dim, mask_dim, 3)
        self.cross_static = CrossAttentionLayer(hidden_dim, nheads, dropout=0.1)

    def heads(self, output: torch.Tensor, mask_features: torch.Tensor, attn_size: Sequence[int]):
        """Queries [Q, N, C] -> (class logits [N, Q, K+1], mask logits [N, Q, h, w], attention mask
        [N*heads, Q, HW of ``attn_size``] (True = blocked), normed queries [N, Q, C])."""
        decoded = self.decoder_norm(output).transpose(0, 1)
        logits = self.class_embed(decoded)
        masks = torch.einsum("bqc,bchw->bqhw", self.mask_embed(decoded), mask_features)
        attn = F.interpolate(masks, size=tuple(attn_size), mode="bilinear", align_corners=False)
        attn = (attn.sigmoid().flatten(2).unsqueeze(1).repeat(1, self.num_heads, 1, 1).flatten(0, 1) < 0.5).detach()
        return logits, masks, attn, decoded

    def forward(self, levels: Sequence[torch.Tensor], mask_features: torch.Tensor, words: torch.Tensor,
                word_padding: torch.Tensor, static: torch.Tensor, static_padding: Optional[torch.Tensor], frames: int
                ) -> Tuple[Dict, torch.Tensor]:
        sizes = [x.shape[-2:] for x in levels]
        pos = [self.pe_layer.unpadded(x).flatten(2).permute(2, 0, 1) for x in levels]
        src = [(x.flatten(2) + self.level_embed.weight[i][None, :, None]).permute(2, 0, 1)
               for i, x in enumerate(levels)]
        n = src[0].shape[1]
        query_pos = self.query_embed.weight.unsqueeze(1).repeat(1, n, 1)
        output = self.query_feat.weight.unsqueeze(1).repeat(1, n, 1)
        static_cue = self.cross_static(output, per_frame(static, frames).transpose(0, 1),
                                       key_padding_mask=per_frame(static_padding, frames))
        output = output + STATIC_CUE_SCALE * static_cue

        logits, masks, attn_mask, _ = self.heads(output, mask_features, sizes[0])
        all_logits, all_masks, frame_queries = [logits], [masks], []
        lang = per_frame(words, frames).transpose(0, 1)
        lang_padding = per_frame(word_padding, frames)
        for i in range(self.num_layers):
            level = i % NUM_LEVELS
            attn_mask[torch.where(attn_mask.sum(-1) == attn_mask.shape[-1])] = False
            output = self.decoder_layer(i, output, src[level], lang, lang_padding, pos[level], query_pos, attn_mask)[0]
            logits, masks, attn_mask, decoded = self.heads(output, mask_features, sizes[(i + 1) % NUM_LEVELS])
            all_logits.append(logits)
            all_masks.append(masks)
            frame_queries.append(decoded)
        outputs = {"pred_logits": all_logits[-1], "pred_masks": all_masks[-1],
                   "aux_outputs": [{"pred_logits": a, "pred_masks": b}
                                   for a, b in zip(all_logits[:-1], all_masks[:-1])]}
        keep = self.num_frame_query_layers if self.training else 1
        return outputs, torch.stack(frame_queries[-keep:])
