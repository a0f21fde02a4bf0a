"""Hierarchical motion perception and the video-level decoder of DsHmp (``vita_module``).

Frame queries of every frame go through VITA's windowed encoder (``transformer_layers.windowed_encode``) where
each layer adds, between self-attention and FFN, a hierarchical cross-attention to the motion tokens:

1. the window's queries are re-ordered frame by frame into tracks by Hungarian matching (scipy) on the cosine
   distance to the previous frame;
2. each track attends to the motion tokens in 3 stages (softmax over TIME, renormalised over the tokens), each
   followed by pairwise temporal averaging (8 -> 4 -> 2 -> 1 steps inside a window): short- to long-term motion;
3. the tanh-gated result is added to every frame of the track, then the re-ordering is undone.

Learned video queries, seeded with ``0.1 x`` a cross-attention to the motion tokens, then decode the encoded frame
queries (bidirectional fusion with the words, carried from layer to layer -> cross-attention to the frame queries ->
cross-attention to the words -> self-attention -> FFN). Heads: 2-class logits, mask embeddings, VITA similarity
embeddings and the contrastive embedding.

DSHMP QUIRK (track order, reproduced by default): the original gathers the current frame's queries with the
assignment of ``linear_sum_assignment(C.T)`` whose rows are the CURRENT queries, i.e. it applies the inverse of
the aligning permutation (tracks are right only for involutive permutations), and the mis-ordered frame becomes
the next reference. ``fixed_track_order=True`` applies the aligning permutation.
"""
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import nn

from ..layers import MLP, c2_xavier_fill
from ..transformer_layers import CrossAttentionLayer, FFNLayer, SelfAttentionLayer, windowed_encode
from .frame_decoder import FusedDecoderLayers

MOTION_CUE_SCALE = 0.1
NUM_STAGES = 3
MATCH_EPS = 1e-6


def cosine_cost(reference: torch.Tensor, current: torch.Tensor) -> np.ndarray:
    """1 - cosine similarity [Q_ref, Q_cur] of two frames' queries [Q, C] (norms + 1e-6; NaN -> 0), on the CPU."""
    reference = reference.detach()
    current = current.detach()
    reference = reference / (reference.norm(dim=1)[:, None] + MATCH_EPS)
    current = current / (current.norm(dim=1)[:, None] + MATCH_EPS)
    cost = (1 - torch.mm(reference, current.transpose(0, 1))).float().cpu()
    return torch.where(torch.isnan(cost), torch.zeros_like(cost), cost).numpy()


def track_order(frames: torch.Tensor, fixed: bool) -> List[np.ndarray]:
    """Per frame the gather index putting its queries in track order: frames [W, Q, C] -> W index arrays [Q]
    (frame 0 keeps its order; frame t is matched against the re-ordered frame t-1)."""
    orders = [np.arange(frames.shape[1])]
    reference = frames[0]
    for t in range(1, frames.shape[0]):
        cost = cosine_cost(reference, frames[t])
        order = linear_sum_assignment(cost)[1] if fixed else linear_sum_assignment(cost.T)[1]
        orders.append(order)
        reference = frames[t][order]
    return orders


def pairwise_average(x: torch.Tensor) -> torch.Tensor:
    """Average neighbouring time steps of x [R, T, C] -> [R, ceil(T / 2), C] (odd T: the last step duplicated)."""
    if x.shape[1] % 2:
        x = torch.cat([x, x.narrow(1, -1, 1)], dim=1)
    return (x[:, ::2] + x[:, 1::2]) / 2


class HierarchicalCrossAttentionLayer(nn.Module):
    """Window tokens [W, Q, N, C] (N windows) and motion tokens [N, M, C] (+ padding [N, M]) -> [W, Q, N, C]."""

    def __init__(self, d_model: int, eps: float = 1e-8, fixed_track_order: bool = False):
        super().__init__()
        self.to_q = nn.Linear(d_model, d_model)
        self.to_k = nn.Linear(d_model, d_model)
        self.to_v = nn.Linear(d_model, d_model)
        for stage in range(1, NUM_STAGES + 1):
            self.add_module(f"out{stage}", nn.Linear(d_model, d_model))
            self.add_module(f"norm{stage}", nn.LayerNorm(d_model))
        self.eps = eps
        self.scale = d_model ** -0.5
        self.res_gate = nn.Sequential(nn.Linear(d_model, d_model, bias=False), nn.ReLU(),
                                      nn.Linear(d_model, d_model, bias=False), nn.Tanh())
        self.fixed_track_order = fixed_track_order

    def sort(self, tokens: torch.Tensor) -> Tuple[torch.Tensor, List[List[np.ndarray]]]:
        """Tokens [W, Q, N, C] in track order, and per window the per-frame gather orders."""
        orders = [track_order(tokens[:, :, j], self.fixed_track_order) for j in range(tokens.shape[2])]
        index = torch.as_tensor(np.stack([np.stack(o) for o in orders], axis=1), device=tokens.device)  # [W, N, Q]
        gathered = torch.gather(tokens, 1, index.transpose(1, 2)[..., None].expand(-1, -1, -1, tokens.shape[-1]))
        return gathered, orders

    @staticmethod
    def unsort(tokens: torch.Tensor, orders: List[List[np.ndarray]]) -> torch.Tensor:
        inverse = np.stack([np.stack([np.argsort(o) for o in per_window]) for per_window in orders], axis=1)
        index = torch.as_tensor(inverse, device=tokens.device).transpose(1, 2)  # [W, Q, N]
        return torch.gather(tokens, 1, index[..., None].expand(-1, -1, -1, tokens.shape[-1]))

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_padding: Optional[torch.Tensor]):
        """q [R, T, C], k / v [R, M, C]: softmax over time of q k^T, renormalised over the (valid) tokens."""
        attn = (torch.matmul(q, k.transpose(1, 2)) * self.scale).softmax(dim=-2)
        if key_padding is not None:
            attn = attn.masked_fill(key_padding[:, None, :], 0.0)
        attn = attn / (attn.sum(dim=-1, keepdim=True) + self.eps)
        return torch.matmul(attn, v)

    def forward(self, tokens: torch.Tensor, motion: torch.Tensor, motion_padding: Optional[torch.Tensor] = None
                ) -> torch.Tensor:
        w, q_count, n, c = tokens.shape
        tracks, orders = self.sort(tokens)
        tracks = tracks.flatten(1, 2).transpose(0, 1)  # [Q*N, W, C], row q * N + j
        memory = motion.repeat(q_count, 1, 1)
        padding = None if motion_padding is None else motion_padding.repeat(q_count, 1)
        k, v = self.to_k(memory), self.to_v(memory)
        query = self.to_q(tracks)
        for stage in range(1, NUM_STAGES + 1):
            out = getattr(self, f"out{stage}")(self.attend(query, k, v, padding))
            query = pairwise_average(getattr(self, f"norm{stage}")(out + query))
        tracks = tracks + self.res_gate(query) * query
        return self.unsort(tracks.transpose(0, 1).reshape(w, q_count, n, c), orders)


class VideoModule(FusedDecoderLayers):
    """Frame queries -> video queries and heads (``vita_module``).

    forward(frame_queries [K, B*T, fQ, C], words [B, L, C], word_padding [B, L], motion [B, M, C], motion_padding
    [B, M], frames T). Training reads all K frame-decoder layers (as K*B sequences, layer-major), inference the
    last one. Returns ``pred_logits`` [K, B, cQ, 2], ``pred_mask_embed`` [K, B, cQ, mask_dim], ``pred_fq_embed``
    [K, B, T, fQ, C], ``pred_cq_embed`` / ``pred_contrastive_embed`` [K, B, cQ, C], ``word_mean`` [C] (the masked
    mean of the fused words of the last sequence; the original's output key ' ') and ``aux_outputs`` (training).
    """

    def __init__(self, hidden_dim: int, num_frame_queries: int, num_queries: int, nheads: int, dim_feedforward: int,
                 enc_layers: int, dec_layers: int, window_size: int, conv_dim: int, mask_dim: int,
                 num_classes: int = 1, aux_loss: bool = True, fixed_track_order: bool = False):
        super().__init__(hidden_dim, nheads, dim_feedforward, dec_layers)
        if window_size < 1:
            raise ValueError(f"the motion window must be >= 1 frame, got {window_size}")
        self.num_heads = nheads
        self.window_size = window_size
        self.num_queries = num_queries
        self.aux_loss = aux_loss
        self.enc_self_attn = nn.ModuleList(SelfAttentionLayer(hidden_dim, nheads) for _ in range(enc_layers))
        self.hierarchical_cross = nn.ModuleList(HierarchicalCrossAttentionLayer(
            hidden_dim, fixed_track_order=fixed_track_order) for _ in range(enc_layers))
        self.enc_ffn = nn.ModuleList(FFNLayer(hidden_dim, dim_feedforward) for _ in range(enc_layers))
        self.vita_mask_features = nn.Conv2d(conv_dim, mask_dim, kernel_size=1)
        c2_xavier_fill(self.vita_mask_features)
        self.decoder_norm = nn.LayerNorm(hidden_dim)
        self.query_feat = nn.Embedding(num_queries, hidden_dim)
        self.query_embed = nn.Embedding(num_queries, hidden_dim)
        self.fq_pos = nn.Embedding(num_frame_queries, hidden_dim)
        self.input_proj_dec = nn.Linear(hidden_dim, hidden_dim)
        self.class_embed = nn.Linear(hidden_dim, num_classes + 1)
        self.mask_embed = MLP(hidden_dim, hidden_dim, mask_dim, 3)
        self.sim_embed_frame = nn.Linear(hidden_dim, hidden_dim)
        self.sim_embed_clip = nn.Linear(hidden_dim, hidden_dim)
        self.contrastive_embed = MLP(hidden_dim, hidden_dim, hidden_dim, 3)
        self.cross_motion = CrossAttentionLayer(hidden_dim, nheads, dropout=0.1)

    def encode(self, frame_queries: torch.Tensor, motion: torch.Tensor, motion_padding: Optional[torch.Tensor],
               batch: int) -> torch.Tensor:
        """[K*B, T, fQ, C] (layer-major) -> [K*B, T, fQ, C]: windowed encoder with the hierarchical cross-attention."""
        windows = -(-frame_queries.shape[1] // self.window_size)
        # Window column j of sequence s = l * B + b is s * windows + w: its video is (j // windows) % B.
        video = torch.arange(frame_queries.shape[0] * windows, device=motion.device) // windows % batch
        column_motion = motion[video]
        column_padding = None if motion_padding is None else motion_padding[video]

        def hierarchical(tokens: torch.Tensor, layer: int) -> torch.Tensor:
            return self.hierarchical_cross[layer](tokens, column_motion, column_padding)

        return windowed_encode(frame_queries, self.enc_self_attn, self.enc_ffn, self.window_size, self.num_heads,
                               shift_odd_layers=not self.training, between=hierarchical)

    def forward(self, frame_queries: torch.Tensor, words: torch.Tensor, word_padding: Optional[torch.Tensor],
                motion: torch.Tensor, motion_padding: Optional[torch.Tensor], frames: int) -> Dict:
        if not self.training:
            frame_queries = frame_queries[-1:]
        layers, bt, fq, c = frame_queries.shape
        batch = bt // frames
        lb = layers * batch
        sequences = self.input_proj_dec(frame_queries.reshape(lb, frames, fq, c))
        encoded = self.encode(sequences, motion, motion_padding, batch)
        src = encoded.flatten(1, 2).transpose(0, 1)  # [T*fQ, L*B, C]
        pred_fq_embed = self.sim_embed_frame(src).transpose(0, 1).reshape(layers, batch, frames, fq, c)
        dec_pos = self.fq_pos.weight[None, :, None, :].repeat(frames, 1, lb, 1).flatten(0, 1)
        query_pos = self.query_embed.weight.unsqueeze(1).repeat(1, lb, 1)
        output = self.query_feat.weight.unsqueeze(1).repeat(1, lb, 1)
        seq_motion = motion.repeat(layers, 1, 1)
        seq_motion_padding = None if motion_padding is None else motion_padding.repeat(layers, 1)
        output = output + MOTION_CUE_SCALE * self.cross_motion(output, seq_motion.transpose(0, 1),
                                                               key_padding_mask=seq_motion_padding)
        lang = words.repeat(layers, 1, 1).transpose(0, 1)
        lang_padding = None if word_padding is None else word_padding.repeat(layers, 1)
        decoded = []
        for i in range(self.num_layers):
            output, src, lang = self.decoder_layer(i, output, src, lang, lang_padding, dec_pos, query_pos)
            if (self.training and self.aux_loss) or i == self.num_layers - 1:
                decoded.append(self.decoder_norm(output).transpose(0, 1).reshape(layers, batch, self.num_queries, c))
        decoded = torch.stack(decoded)  # [D, K, B, cQ, C]
        logits = self.class_embed(decoded)
        mask_embed = self.mask_embed(decoded)
        cq_embed = self.sim_embed_clip(decoded)
        contrastive = self.contrastive_embed(decoded)
        valid = torch.ones_like(lang[..., 0]).transpose(0, 1) if lang_padding is None else (~lang_padding).float()
        word_mean = (lang.transpose(0, 1) * valid.unsqueeze(-1)).sum(1) / valid.sum(1, keepdim=True)
        return {"pred_logits": logits[-1], "pred_mask_embed": mask_embed[-1], "pred_fq_embed": pred_fq_embed,
                "pred_cq_embed": cq_embed[-1], "pred_contrastive_embed": contrastive[-1], "word_mean": word_mean[-1],
                "aux_outputs": [{"pred_logits": a, "pred_mask_embed": b, "pred_cq_embed": cq, "pred_fq_embed":
                                 pred_fq_embed} for a, b, cq in zip(logits[:-1], mask_embed[:-1], cq_embed[:-1])]}
