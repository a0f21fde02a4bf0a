"""Post-norm attention blocks of Mask2Former / VITA and VITA's windowed encoder over frame queries.

Shared by MUTR's temporal interaction module (``mutr/mti.py``) and DsHmp's frame decoder and hierarchical
motion perception (``dshmp/``). Parameter names are those of the public checkpoints (``self_attn``,
``multihead_attn``, ``linear1``, ``linear2``, ``norm``). Sequences are [S, N, C] (``nn.MultiheadAttention``'s
default layout).
"""
import math
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .layers import with_pos

# The additive attention mask value of the shifted windows (VITA's; not -inf, so a row whose keys are all
# masked stays finite).
SHIFT_MASK_VALUE = -1000.0


def xavier_init(module: nn.Module) -> None:
    """Xavier-uniform every parameter with more than one dimension (Mask2Former's ``_reset_parameters``)."""
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
        xavier_init(self)

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
        xavier_init(self)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, pos: Optional[torch.Tensor] = None,
                query_pos: Optional[torch.Tensor] = None, attn_mask: Optional[torch.Tensor] = None,
                key_padding_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """attn_mask: [N*heads, S, M] (bool True = blocked, or additive); key_padding_mask [N, M] (True = ignore)."""
        out = self.multihead_attn(query=with_pos(x, query_pos), key=with_pos(memory, pos), value=memory,
                                  attn_mask=attn_mask, key_padding_mask=key_padding_mask)[0]
        return self.norm(x + self.dropout(out))


class FFNLayer(nn.Module):
    """Post-norm feed-forward block: x -> norm(x + linear2(relu(linear1(x))))."""

    def __init__(self, d_model: int, dim_feedforward: int, dropout: float = 0.0):
        super().__init__()
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        xavier_init(self)

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


# Called between a layer's self-attention and its FFN with the window tokens [W, Qf, N*Nw, C] and the layer index.
WindowHook = Callable[[torch.Tensor, int], torch.Tensor]


def windowed_encode(sequences: torch.Tensor, self_attn: Sequence[SelfAttentionLayer], ffn: Sequence[FFNLayer],
                    window_size: int, num_heads: int, shift_odd_layers: bool,
                    between: Optional[WindowHook] = None) -> torch.Tensor:
    """VITA's frame-query encoder: [N, T, Qf, C] -> [N, T, Qf, C].

    Time is zero-padded to whole windows of ``window_size`` frames; layer i runs self-attention over the W*Qf
    tokens of each window (padded frames masked as keys), ``between`` (if given) and the FFN. With
    ``shift_odd_layers`` (VITA at inference) the odd layers use windows rolled by ceil(W / 2) with
    ``shifted_window_mask``. Window tokens are ordered (frame, query); windows of sequence n are batch columns
    n * Nw + w.
    """
    n, t, fq, c = sequences.shape
    w = window_size
    padded_t = math.ceil(t / w) * w
    x = F.pad(sequences, (0, 0, 0, 0, 0, padded_t - t))
    num_windows = padded_t // w
    padded = torch.arange(padded_t, device=x.device) >= t
    key_padding = padded.view(num_windows, w, 1).expand(-1, -1, fq).reshape(1, num_windows, w * fq)
    key_padding = key_padding.expand(n, -1, -1).reshape(n * num_windows, w * fq)
    shift = math.ceil(w / 2)
    shift_mask = None
    for layer, (attn, feed_forward) in enumerate(zip(self_attn, ffn)):
        shifted = shift_odd_layers and layer % 2 == 1
        if shifted:
            if shift_mask is None:
                shift_mask = shifted_window_mask(t, padded_t, w, fq, x.device).to(x.dtype)
                shift_mask = shift_mask.repeat(n, 1, 1).repeat_interleave(num_heads, dim=0)
            x = x.roll(shift, 1)
        tokens = x.reshape(n * num_windows, w * fq, c).transpose(0, 1)  # [W*Qf, N*Nw, C]
        if shifted:
            tokens = attn(tokens, attn_mask=shift_mask)
        else:
            tokens = attn(tokens, key_padding_mask=key_padding)
        if between is not None:
            tokens = between(tokens.reshape(w, fq, n * num_windows, c), layer).reshape(w * fq, n * num_windows, c)
        x = feed_forward(tokens).transpose(0, 1).reshape(n, padded_t, fq, c)
        if shifted:
            x = x.roll(-shift, 1)
    return x[:, :t]
