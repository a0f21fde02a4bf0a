"""MUTR's multi-object temporal interaction (MTI): per-frame object queries -> video-level queries.

A windowed transformer encoder lets the frame queries of nearby frames interact (windows of
``window_size`` frames; at inference every odd layer uses windows shifted by half a window), then a
decoder of learned video queries cross-attends to all frame queries of the clip. Parameter names
are those of the public MUTR checkpoints (``mti.*``).
"""
import torch
from torch import nn

from ..transformer_layers import CrossAttentionLayer, FFNLayer, SelfAttentionLayer, windowed_encode


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
        return windowed_encode(sequences, self.enc_self_attn, self.enc_ffn, self.window_size, self.num_heads,
                               shift_odd_layers=not self.training)
