"""Vision-language early fusion: visual tokens attend to the words of the sentence."""
from typing import Optional

import torch
from torch import nn

from .layers import with_pos


class VisionLanguageFusionModule(nn.Module):
    """Cross-attention from visual tokens (queries) to word features (keys/values).

    ReferFormer multiplies the visual feature by the attended text (``mode='multiply'``);
    MUTR adds it as a residual (``mode='add'``).
    """

    def __init__(self, d_model: int, nhead: int, dropout: float = 0.0, mode: str = "multiply"):
        super().__init__()
        if mode not in ("multiply", "add"):
            raise ValueError(f"fusion mode must be 'multiply' or 'add', got {mode!r}")
        self.mode = mode
        self.multihead_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)

    def forward(self, tgt: torch.Tensor, memory: torch.Tensor,
                memory_key_padding_mask: Optional[torch.Tensor] = None,
                pos: Optional[torch.Tensor] = None,
                query_pos: Optional[torch.Tensor] = None) -> torch.Tensor:
        """tgt: visual tokens [N_v, B, C]; memory: words [L, B, C]; mask [B, L] (True = padding);
        pos: text position [L, B, C]. Returns [N_v, B, C]."""
        attended = self.multihead_attn(query=with_pos(tgt, query_pos), key=with_pos(memory, pos),
                                       value=memory, key_padding_mask=memory_key_padding_mask)[0]
        return tgt * attended if self.mode == "multiply" else tgt + attended
