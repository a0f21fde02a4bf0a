"""GroundingDINO's bidirectional vision-language attention block, as DsHmp's decoders use it.

Written here (GroundingDINO is not a package): both inputs are layer-normed, one attention matrix serves both
directions (pixels attend to the words with padded words masked; words, padded ones too, attend to every
pixel), and the block returns ``LN(v) + gamma_v * dv`` and ``LN(l) + gamma_l * dl`` (the residual is added to the
NORMED inputs). The logits are shifted by their maximum over the WHOLE tensor (all heads and batch rows) and
clamped to +-50000 before the softmaxes, as the original, which only matters for extreme logits.
"""
from typing import Optional, Tuple

import torch
from timm.layers import DropPath
from torch import nn

LOGIT_CLAMP = 50000.0


class BiMultiHeadAttention(nn.Module):
    """One attention matrix between visual tokens v [B, Nv, v_dim] and words l [B, Nl, l_dim], used both ways."""

    def __init__(self, v_dim: int, l_dim: int, embed_dim: int, num_heads: int, dropout: float = 0.1):
        super().__init__()
        if embed_dim % num_heads != 0:
            raise ValueError(f"embed_dim {embed_dim} must be divisible by num_heads {num_heads}")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.dropout = nn.Dropout(dropout)
        self.v_proj = nn.Linear(v_dim, embed_dim)
        self.l_proj = nn.Linear(l_dim, embed_dim)
        self.values_v_proj = nn.Linear(v_dim, embed_dim)
        self.values_l_proj = nn.Linear(l_dim, embed_dim)
        self.out_v_proj = nn.Linear(embed_dim, v_dim)
        self.out_l_proj = nn.Linear(embed_dim, l_dim)
        for linear in (self.v_proj, self.l_proj, self.values_v_proj, self.values_l_proj, self.out_v_proj,
                       self.out_l_proj):
            nn.init.xavier_uniform_(linear.weight)
            linear.bias.data.fill_(0)

    def _heads(self, x: torch.Tensor, batch: int) -> torch.Tensor:
        """[B, N, E] -> [B * heads, N, head_dim]."""
        return x.view(batch, -1, self.num_heads, self.head_dim).transpose(1, 2).reshape(
            batch * self.num_heads, -1, self.head_dim)

    def _merge(self, x: torch.Tensor, batch: int) -> torch.Tensor:
        """[B * heads, N, head_dim] -> [B, N, E]."""
        return x.view(batch, self.num_heads, -1, self.head_dim).transpose(1, 2).reshape(batch, -1, self.embed_dim)

    def forward(self, v: torch.Tensor, l: torch.Tensor, word_padding: Optional[torch.Tensor] = None
                ) -> Tuple[torch.Tensor, torch.Tensor]:
        """word_padding [B, Nl] (True = padding word). Returns (dv [B, Nv, v_dim], dl [B, Nl, l_dim])."""
        batch = v.shape[0]
        query = self._heads(self.v_proj(v) * self.scale, batch)
        key = self._heads(self.l_proj(l), batch)
        value_v = self._heads(self.values_v_proj(v), batch)
        value_l = self._heads(self.values_l_proj(l), batch)
        logits = torch.bmm(query, key.transpose(1, 2))  # [B*h, Nv, Nl]
        logits = (logits - logits.max()).clamp(min=-LOGIT_CLAMP, max=LOGIT_CLAMP)
        logits_l = logits.transpose(1, 2)
        logits_l = (logits_l - logits_l.max(dim=-1, keepdim=True)[0]).clamp(min=-LOGIT_CLAMP, max=LOGIT_CLAMP)
        attn_l = logits_l.softmax(dim=-1)
        if word_padding is not None:
            padding = word_padding[:, None, None, :].expand(-1, self.num_heads, -1, -1).flatten(0, 1)
            logits = logits.masked_fill(padding, float("-inf"))
        attn_v = logits.softmax(dim=-1)
        attn_v = self.dropout(attn_v)
        attn_l = self.dropout(attn_l)
        out_v = self.out_v_proj(self._merge(torch.bmm(attn_v, value_l), batch))
        out_l = self.out_l_proj(self._merge(torch.bmm(attn_l, value_v), batch))
        return out_v, out_l


class BiAttentionBlock(nn.Module):
    """v [Nv, B, v_dim] and l [Nl, B, l_dim] (sequence first) -> fused (v, l) of the same shapes."""

    def __init__(self, v_dim: int, l_dim: int, embed_dim: int, num_heads: int, dropout: float = 0.1,
                 drop_path: float = 0.0, init_values: float = 1e-4):
        super().__init__()
        self.layer_norm_v = nn.LayerNorm(v_dim)
        self.layer_norm_l = nn.LayerNorm(l_dim)
        self.attn = BiMultiHeadAttention(v_dim, l_dim, embed_dim, num_heads, dropout=dropout)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.gamma_v = nn.Parameter(init_values * torch.ones(v_dim))
        self.gamma_l = nn.Parameter(init_values * torch.ones(l_dim))

    def forward(self, v: torch.Tensor, l: torch.Tensor, word_padding: Optional[torch.Tensor] = None
                ) -> Tuple[torch.Tensor, torch.Tensor]:
        v = self.layer_norm_v(v.transpose(0, 1))
        l = self.layer_norm_l(l.transpose(0, 1))
        delta_v, delta_l = self.attn(v, l, word_padding)
        v = v + self.drop_path(self.gamma_v * delta_v)
        l = l + self.drop_path(self.gamma_l * delta_l)
        return v.transpose(0, 1), l.transpose(0, 1)
