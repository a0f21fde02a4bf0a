"""MUTR's multi-object temporal interaction (MTI): per-frame object queries -> video-level queries.

A windowed transformer encoder lets the frame queries of nearby frames interact (windows of
``window_size`` frames; at inference every odd layer uses windows shifted by half a window), then a
decoder of learned video queries cross-attends to all frame queries of the clip. Parameter names
are those of the public MUTR checkpoints (``mti.*``).
"""
import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..layers import with_pos

# The additive attention mask value of the shifted windows (the original's; not -inf, so a row whose
# keys are all masked stays finite).
SHIFT_MASK_VALUE = -1000.0


def _xavier_init(module: nn.Module) -> None:
    for p in module.parameters():
        if p.dim() > 1:
            nn.init.xavier_uniform_(p)


class SelfAttentionLayer(nn.Module):
    """Post-norm self-attention: x [S, N, C] -> norm(x + attn(x + pos, x + pos, x))."""

    def __init__(self, d_model: int, nhead: int, dropout: float = 0.0):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        _xavier_init(self)

    def forward(self, x: torch.Tensor, attn_mask: Optional[torch.Tensor] = None,
                key_padding_mask: Optional[torch.Tensor] = None,
                query_pos: Optional[torch.Tensor] = None) -> torch.Tensor:
        """attn_mask: additive [N*heads, S, S]; key_padding_mask [N, S] (True = ignore)."""
        q = k = with_pos(x, query_pos)
        out = self.self_attn(q, k, value=x, attn_mask=attn_mask, key_padding_mask=key_padding_mask)[0]
        return self.norm(x + self.dropout(out))


class CrossAttentionLayer(nn.Module):
    """Post-norm cross-attention: x [S, N, C] attends to memory [M, N, C]."""

    def __init__(self, d_model: int, nhead: int, dropout: float = 0.0):
        super().__init__()
        self.multihead_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        _xavier_init(self)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, pos: Optional[torch.Tensor] = None,
                query_pos: Optional[torch.Tensor] = None) -> torch.Tensor:
        out = self.multihead_attn(query=with_pos(x, query_pos), key=with_pos(memory, pos), value=memory)[0]
        return self.norm(x + self.dropout(out))


class FFNLayer(nn.Module):
    """Post-norm feed-forward block: x -> norm(x + linear2(relu(linear1(x))))."""

    def __init__(self, d_model: int, dim_feedforward: int, dropout: float = 0.0):
        super().__init__()
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        _xavier_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.linear2(self.dropout(F.relu(self.linear1(x))))
        return self.norm(x + self.dropout(out))


def shifted_window_mask(num_frames: int, padded_frames: int, window_size: int, queries_per_frame: int,
                        device) -> torch.Tensor:
    """Additive attention mask [Nw, W*Q, W*Q] of the windows after rolling time by ceil(W / 2).

    In the first window the frames wrapped around from the end and the first frames must not see
    each other; in the first and the last window no token attends to, or from, a padded frame; in
    the other windows rows of padded frames are masked. Tokens are ordered (frame, query).
    """
    w, half = window_size, math.ceil(window_size / 2)
    padded = torch.arange(padded_frames, device=device) >= num_frames
    rows = padded.roll(half, 0).view(-1, w)[:, :, None].expand(-1, w, w).clone()  # [Nw, W(query), W(key)]
    rows[0] = rows[0] | rows[0].transpose(0, 1)
    rows[-1] = rows[-1] | rows[-1].transpose(0, 1)
    rows[0, :half, half:] = True
    rows[0, half:, :half] = True
    mask = rows[:, :, None, :, None].expand(-1, w, queries_per_frame, w, queries_per_frame)
    return mask.reshape(-1, w * queries_per_frame, w * queries_per_frame).float() * SHIFT_MASK_VALUE


class MTI(nn.Module):
    """Frame queries [D, B, T, Qf, C] of D decoder layers -> video queries [D, B, Q, C] (layers independent).

    Encoder: ``enc_layers`` x (windowed self-attention + FFN) over the T*Qf frame queries, time
    zero-padded to a multiple of ``window_size``; windows are shifted in odd layers in eval mode
    only. Decoder: ``dec_layers`` x (cross-attention of the Q learned video queries to all frame
    queries, with a learned per-slot position ``fq_pos`` shared over time; self-attention; FFN),
    then ``decoder_norm``.
    """

    def __init__(self, dim: int, window_size: int, num_frame_queries: int, num_queries: int, nheads: int,
                 dim_feedforward: int, enc_layers: int, dec_layers: int, dropout: float = 0.2):
        super().__init__()
        if window_size < 1:
            raise ValueError(f"MTI window_size must be >= 1, got {window_size}")
        self.window_size = window_size
        self.num_heads = nheads
        self.num_queries = num_queries
        self.enc_self_attn = nn.ModuleList(SelfAttentionLayer(dim, nheads, dropout) for _ in range(enc_layers))
        self.enc_ffn = nn.ModuleList(FFNLayer(dim, dim_feedforward, dropout) for _ in range(enc_layers))
        self.transformer_self_attention_layers = nn.ModuleList(
            SelfAttentionLayer(dim, nheads, dropout) for _ in range(dec_layers))
        self.transformer_cross_attention_layers = nn.ModuleList(
            CrossAttentionLayer(dim, nheads, dropout) for _ in range(dec_layers))
        self.transformer_ffn_layers = nn.ModuleList(FFNLayer(dim, dim_feedforward, dropout) for _ in range(dec_layers))
        self.fq_pos = nn.Embedding(num_frame_queries, dim)
        self.query_embed = nn.Embedding(num_queries, dim)
        self.query_feat = nn.Embedding(num_queries, dim)
        self.decoder_norm = nn.LayerNorm(dim)

    def forward(self, frame_queries: torch.Tensor, mix_batch_and_time: bool = False) -> torch.Tensor:
        """frame_queries [D, B, T, Qf, C] -> video queries of the last MTI decoder layer [D, B, Q, C].

        mix_batch_and_time: reproduce the original's ``reshape`` of a [D, T, B, Qf, C] tensor to
        [D*B, T, Qf, C], which for B > 1 cuts the (t b)-ordered frames of the batch into B
        sequences of T frames mixing the videos (how the public models were trained with batch 2).
        """
        d, b, t, fq, c = frame_queries.shape
        if mix_batch_and_time:
            sequences = frame_queries.transpose(1, 2).reshape(d * b, t, fq, c)
        else:
            sequences = frame_queries.reshape(d * b, t, fq, c)
        memory = self.encode(sequences)  # [D*B, T, Qf, C]
        memory = memory.flatten(1, 2).transpose(0, 1)  # [T*Qf, D*B, C], tokens ordered (t, q)
        pos = self.fq_pos.weight.repeat(t, 1)[:, None, :]
        query_pos = self.query_embed.weight[:, None, :]
        output = self.query_feat.weight[:, None, :].repeat(1, d * b, 1)
        for cross, self_attn, ffn in zip(self.transformer_cross_attention_layers,
                                         self.transformer_self_attention_layers, self.transformer_ffn_layers):
            output = cross(output, memory, pos=pos, query_pos=query_pos)
            output = self_attn(output, query_pos=query_pos)
            output = ffn(output)
        return self.decoder_norm(output).transpose(0, 1).reshape(d, b, self.num_queries, c)

    def encode(self, sequences: torch.Tensor) -> torch.Tensor:
        """[N, T, Qf, C] -> [N, T, Qf, C]: windowed self-attention over frames padded to whole windows."""
        n, t, fq, c = sequences.shape
        w = self.window_size
        padded_t = math.ceil(t / w) * w
        x = F.pad(sequences, (0, 0, 0, 0, 0, padded_t - t))
        num_windows = padded_t // w
        padded = torch.arange(padded_t, device=x.device) >= t
        key_padding = padded.view(num_windows, w, 1).expand(-1, -1, fq).reshape(1, num_windows, w * fq)
        key_padding = key_padding.expand(n, -1, -1).reshape(n * num_windows, w * fq)
        shift = math.ceil(w / 2)
        shift_mask = None
        for layer, (attn, ffn) in enumerate(zip(self.enc_self_attn, self.enc_ffn)):
            shifted = not self.training and layer % 2 == 1
            if shifted:
                if shift_mask is None:
                    shift_mask = shifted_window_mask(t, padded_t, w, fq, x.device).to(x.dtype)
                    shift_mask = shift_mask.repeat(n, 1, 1).repeat_interleave(self.num_heads, dim=0)
                x = x.roll(shift, 1)
            tokens = x.reshape(n * num_windows, w * fq, c).transpose(0, 1)  # [W*Qf, N*Nw, C]
            if shifted:
                tokens = attn(tokens, attn_mask=shift_mask)
            else:
                tokens = attn(tokens, key_padding_mask=key_padding)
            x = ffn(tokens).transpose(0, 1).reshape(n, padded_t, fq, c)
            if shifted:
                x = x.roll(-shift, 1)
        return x[:, :t]
