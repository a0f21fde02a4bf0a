"""Deformable-DETR encoder/decoder as ReferFormer uses it.

Decoder queries are the sentence feature repeated per frame and query slot; iterative box
refinement updates the reference boxes after every layer (``bbox_embed`` is attached by the
model). Post-norm layers with ReLU FFNs.

``DeformableTransformer.encode`` turns projected levels into a ``Memory``; ``decode`` runs the queries over
one or more memories: each decoder layer cross-attends to them in turn with its one cross-attention module
and norm (ReferFormer: the frame memory only; TFVOS: the prompt memory, then the frame memory).
"""
import copy
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from rvos.util.misc import inverse_sigmoid

from .layers import with_pos
from .ops.modules import MSDeformAttn


def _clones(module: nn.Module, n: int) -> nn.ModuleList:
    return nn.ModuleList(copy.deepcopy(module) for _ in range(n))


@dataclass
class Memory:
    """Encoder output of N frames over L levels, as the decoder's cross-attention reads it.

    values [N, S, C] (S = sum of H_l * W_l, levels in order); spatial_shapes [L, 2] (H_l, W_l);
    level_start_index [L]; valid_ratios [N, L, 2] (w, h): the fractions of each level that are not padding,
    which scale the decoder's reference points; padding_mask [N, S] (True = padding).
    """

    values: torch.Tensor
    spatial_shapes: torch.Tensor
    level_start_index: torch.Tensor
    valid_ratios: torch.Tensor
    padding_mask: torch.Tensor

    def maps(self, levels: int) -> List[torch.Tensor]:
        """The first ``levels`` levels as maps [N, C, H_l, W_l]."""
        n, _, c = self.values.shape
        maps, start = [], 0
        for h, w in self.spatial_shapes[:levels].tolist():
            maps.append(self.values[:, start:start + h * w].reshape(n, h, w, c).permute(0, 3, 1, 2).contiguous())
            start += h * w
        return maps


def reset_deformable_parameters(module: nn.Module) -> None:
    """Deformable-DETR's initialisation: xavier for every matrix, then MSDeformAttn's own reset."""
    for p in module.parameters():
        if p.dim() > 1:
            nn.init.xavier_uniform_(p)
    for m in module.modules():
        if isinstance(m, MSDeformAttn):
            m._reset_parameters()


class DeformableEncoderLayer(nn.Module):
    """MSDeformAttn self-attention over all levels of one frame, then FFN (post-norm)."""

    def __init__(self, d_model=256, d_ffn=1024, dropout=0.1, n_levels=4, n_heads=8, n_points=4):
        super().__init__()
        self.self_attn = MSDeformAttn(d_model, n_levels, n_heads, n_points)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.dropout2 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.dropout3 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(self, src, pos, reference_points, spatial_shapes, level_start_index, padding_mask=None):
        """src/pos: [N, S, C]; reference_points [N, S, L, 2]; padding_mask [N, S]. Returns [N, S, C]."""
        attn = self.self_attn(with_pos(src, pos), reference_points, src, spatial_shapes,
                              level_start_index, padding_mask)
        src = self.norm1(src + self.dropout1(attn))
        ffn = self.linear2(self.dropout2(F.relu(self.linear1(src))))
        return self.norm2(src + self.dropout3(ffn))


class DeformableEncoder(nn.Module):
    def __init__(self, layer: nn.Module, num_layers: int):
        super().__init__()
        self.layers = _clones(layer, num_layers)
        self.num_layers = num_layers

    @staticmethod
    def reference_points(spatial_shapes, valid_ratios: torch.Tensor) -> torch.Tensor:
        """Pixel centres of every level, normalised by the valid extent -> [N, S, L, 2] (x, y)."""
        device = valid_ratios.device
        refs = []
        for lvl, (h, w) in enumerate(spatial_shapes.tolist()):
            ref_y, ref_x = torch.meshgrid(
                torch.linspace(0.5, h - 0.5, h, dtype=torch.float32, device=device),
                torch.linspace(0.5, w - 0.5, w, dtype=torch.float32, device=device), indexing="ij")
            ref_y = ref_y.reshape(-1)[None] / (valid_ratios[:, None, lvl, 1] * h)
            ref_x = ref_x.reshape(-1)[None] / (valid_ratios[:, None, lvl, 0] * w)
            refs.append(torch.stack((ref_x, ref_y), -1))
        return torch.cat(refs, 1)[:, :, None] * valid_ratios[:, None]

    def forward(self, src, spatial_shapes, level_start_index, valid_ratios, pos=None, padding_mask=None):
        reference_points = self.reference_points(spatial_shapes, valid_ratios)
        for layer in self.layers:
            src = layer(src, pos, reference_points, spatial_shapes, level_start_index, padding_mask)
        return src


class DeformableDecoderLayer(nn.Module):
    """Self-attention among the queries of a frame, MSDeformAttn cross-attention (to each memory in turn), FFN
    (post-norm)."""

    def __init__(self, d_model=256, d_ffn=1024, dropout=0.1, n_levels=4, n_heads=8, n_points=4):
        super().__init__()
        self.cross_attn = MSDeformAttn(d_model, n_levels, n_heads, n_points)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.self_attn = nn.MultiheadAttention(d_model, n_heads, dropout=dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.dropout3 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.dropout4 = nn.Dropout(dropout)
        self.norm3 = nn.LayerNorm(d_model)

    def forward(self, tgt, query_pos, attended: Sequence[Tuple[torch.Tensor, Memory]]):
        """tgt/query_pos: [N, Q, C]; ``attended``: (reference points [N, Q, L, 2|4], memory) pairs, cross-attended
        in order with the same ``cross_attn`` and ``norm1`` (ReferFormer: one). Returns [N, Q, C]."""
        q = k = with_pos(tgt, query_pos).transpose(0, 1)
        attn = self.self_attn(q, k, tgt.transpose(0, 1))[0].transpose(0, 1)
        tgt = self.norm2(tgt + self.dropout2(attn))
        for reference_points, memory in attended:
            attn = self.cross_attn(with_pos(tgt, query_pos), reference_points, memory.values, memory.spatial_shapes,
                                   memory.level_start_index, memory.padding_mask)
            tgt = self.norm1(tgt + self.dropout1(attn))
        ffn = self.linear2(self.dropout3(F.relu(self.linear1(tgt))))
        return self.norm3(tgt + self.dropout4(ffn))


class DeformableDecoder(nn.Module):
    """Decoder returning every layer's output and reference points.

    ``bbox_embed`` (a ModuleList, one per layer) is set by the model when iterative box
    refinement is on; it is registered here too, so its weights appear under both names in
    the state dict, exactly as in the public checkpoints.
    """

    def __init__(self, layer: nn.Module, num_layers: int):
        super().__init__()
        self.layers = _clones(layer, num_layers)
        self.num_layers = num_layers
        self.bbox_embed: Optional[nn.ModuleList] = None

    @staticmethod
    def scaled_reference(reference_points: torch.Tensor, valid_ratios: torch.Tensor) -> torch.Tensor:
        """Reference points [N, Q, 2|4] in [0, 1] of the valid extent -> [N, Q, L, 2|4] per level of a padded memory
        with ``valid_ratios`` [N, L, 2]."""
        if reference_points.shape[-1] == 4:
            valid_ratios = torch.cat([valid_ratios, valid_ratios], -1)
        return reference_points[:, :, None] * valid_ratios[:, None]

    def forward(self, tgt, reference_points, memories: Sequence[Memory], query_pos=None):
        """tgt [N, Q, C]; reference_points [N, Q, 2] in [0, 1]; ``memories`` cross-attended in order by every
        layer, each with the reference points scaled by its own ``valid_ratios``.

        Returns (hs [D, N, Q, C], references [D, N, Q, 2|4]) where ``references[l]`` is the
        reference after layer ``l`` (4-d boxes once refinement has run).
        """
        outputs, references = [], []
        output = tgt
        for lid, layer in enumerate(self.layers):
            attended = [(self.scaled_reference(reference_points, m.valid_ratios), m) for m in memories]
            output = layer(output, query_pos, attended)
            if self.bbox_embed is not None:
                delta = self.bbox_embed[lid](output)
                if reference_points.shape[-1] == 4:
                    new_ref = delta + inverse_sigmoid(reference_points)
                else:
                    new_ref = torch.cat([delta[..., :2] + inverse_sigmoid(reference_points), delta[..., 2:]], -1)
                reference_points = new_ref.sigmoid().detach()
            outputs.append(output)
            references.append(reference_points)
        return torch.stack(outputs), torch.stack(references)


class DeformableTransformer(nn.Module):
    """Encoder over the flattened multi-level features of every frame + query decoder."""

    def __init__(self, d_model=256, nhead=8, num_encoder_layers=6, num_decoder_layers=6, dim_feedforward=1024,
                 dropout=0.1, num_feature_levels=4, dec_n_points=4, enc_n_points=4):
        super().__init__()
        self.d_model = d_model
        self.nhead = nhead
        self.num_feature_levels = num_feature_levels
        self.encoder = DeformableEncoder(
            DeformableEncoderLayer(d_model, dim_feedforward, dropout, num_feature_levels, nhead, enc_n_points),
            num_encoder_layers)
        self.decoder = DeformableDecoder(
            DeformableDecoderLayer(d_model, dim_feedforward, dropout, num_feature_levels, nhead, dec_n_points),
            num_decoder_layers)
        self.level_embed = nn.Parameter(torch.empty(num_feature_levels, d_model))
        self.reference_points = nn.Linear(d_model, 2)
        self._reset_parameters()

    def _reset_parameters(self):
        reset_deformable_parameters(self)
        nn.init.xavier_uniform_(self.reference_points.weight, gain=1.0)
        nn.init.constant_(self.reference_points.bias, 0.0)
        nn.init.normal_(self.level_embed)

    @staticmethod
    def valid_ratio(mask: torch.Tensor) -> torch.Tensor:
        """Padding mask [N, H, W] -> fraction of valid width and height [N, 2] (w, h)."""
        _, h, w = mask.shape
        valid_h = torch.sum(~mask[:, :, 0], 1)
        valid_w = torch.sum(~mask[:, 0, :], 1)
        return torch.stack([valid_w.float() / w, valid_h.float() / h], -1)

    def encode(self, srcs: List[torch.Tensor], masks: List[torch.Tensor], pos_embeds: List[torch.Tensor]) -> Memory:
        """The encoder over projected levels: srcs / pos_embeds per level [N, C, H_l, W_l] (N = batch * frames),
        masks [N, H_l, W_l] (True = padding)."""
        src_flat, mask_flat, pos_flat, shapes = [], [], [], []
        for lvl, (src, mask, pos) in enumerate(zip(srcs, masks, pos_embeds)):
            shapes.append(src.shape[-2:])
            src_flat.append(src.flatten(2).transpose(1, 2))
            mask_flat.append(mask.flatten(1))
            pos_flat.append(pos.flatten(2).transpose(1, 2) + self.level_embed[lvl].view(1, 1, -1))
        src_flat = torch.cat(src_flat, 1)
        mask_flat = torch.cat(mask_flat, 1)
        pos_flat = torch.cat(pos_flat, 1)
        spatial_shapes = torch.as_tensor(shapes, dtype=torch.long, device=src_flat.device)
        level_start_index = torch.cat((spatial_shapes.new_zeros((1,)), spatial_shapes.prod(1).cumsum(0)[:-1]))
        valid_ratios = torch.stack([self.valid_ratio(m) for m in masks], 1)
        values = self.encoder(src_flat, spatial_shapes, level_start_index, valid_ratios, pos_flat, mask_flat)
        return Memory(values, spatial_shapes, level_start_index, valid_ratios, mask_flat)

    def decode(self, tgt: torch.Tensor, memories: Sequence[Memory], query_embed: torch.Tensor):
        """The decoder over ``memories`` (cross-attended in order; the last one is the frames' own).

        tgt: decoder input [N, Q, C]; query_embed: query positions [Q, C].
        Returns hs [D, N, Q, C]; the maps of the first ``L-1`` levels of the last memory, each [N, C, H_l, W_l];
        init_reference [N, Q, 2]; inter_references [D, N, Q, 4].
        """
        n = tgt.shape[0]
        query_pos = query_embed.unsqueeze(0).expand(n, -1, -1)
        init_reference = self.reference_points(query_pos).sigmoid()
        hs, inter_references = self.decoder(tgt, init_reference, memories, query_pos)
        memory = memories[-1]
        return hs, memory.maps(memory.spatial_shapes.shape[0] - 1), init_reference, inter_references

    def forward(self, srcs: List[torch.Tensor], tgt: torch.Tensor, masks: List[torch.Tensor],
                pos_embeds: List[torch.Tensor], query_embed: torch.Tensor):
        """Encode the levels and decode over them (see ``encode`` and ``decode``)."""
        return self.decode(tgt, [self.encode(srcs, masks, pos_embeds)], query_embed)


def build_deformable_transformer(args) -> DeformableTransformer:
    if getattr(args, "two_stage", False):
        raise ValueError("--two_stage is not supported by the ReferFormer family (it must stay off)")
    return DeformableTransformer(
        d_model=args.hidden_dim, nhead=args.nheads, num_encoder_layers=args.enc_layers,
        num_decoder_layers=args.dec_layers, dim_feedforward=args.dim_feedforward, dropout=args.dropout,
        num_feature_levels=args.num_feature_levels, dec_n_points=args.dec_n_points, enc_n_points=args.enc_n_points)
