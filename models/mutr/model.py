"""MUTR (AAAI 2024): ReferFormer with temporal text aggregation and multi-object temporal interaction.

Differences to the ReferFormer core (docs: MODEL_FAMILY.md section 2.2):

* MTA (``MTA.layers.0``): the word features attend to the freshly projected (unfused) visual tokens
  of all T frames, level by level (strides 8, 16, 32, 64); the updated ``<s>`` token replaces the
  sentence feature as the decoder query seed. Early fusion and the pixel decoder keep the original
  word features.
* Early fusion is additive (``fusion_mode='add'``).
* MTI (``mti.*``, models/mutr/mti.py) turns the per-frame decoder queries into video queries; the class
  head and the dynamic-kernel controller read them (one set per video, repeated over frames), the
  box head reads the per-frame decoder queries.

The MeViS-2024 solution (Tapall, a MUTR fork with the same parameters) adds ``inference_long_term``:
the frame queries of a whole video's contiguous chunks go through MTI at once to choose the query.

Behaviour of the original code reproduced by default (``MUTR.legacy_*``):

* Inference quirk (published numbers): at inference MTI sees only the last decoder layer, so the
  heads run for one layer: boxes from ``bbox_embed[0]`` on the FIRST decoder layer, masks with
  ``inter_references[0]``, classes from ``class_embed[0]``. ``fixed_inference=True`` runs MTI on
  every layer and predicts from the last one, as in training.
* Batch/time mixing: for B > 1 the original mixes the frames of different videos inside MTI and
  tiles the video queries over frames in (t b) order but reads them as (b t). The public
  checkpoints were trained with it (batch 2); with ``batch_time_mixing='train'`` (default) it is
  reproduced in training only, so batched inference equals the original's per-video (B = 1) runs;
  'always' reproduces the original code for any batch, 'never' fixes it.
"""
import logging
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn

from ..criterion import SetCriterion, build_weight_dict
from ..layers import with_pos
from ..matcher import build_matcher
from .mti import MTI
from ..referformer import ReferFormer, VisualFeatures, core_model_kwargs
from ..text_encoder import TextEncoding

logger = logging.getLogger(__name__)

BATCH_TIME_MIXING = ("train", "always", "never")
# Constants the original hard-codes (the FFN width is an option only so that tiny models can shrink it).
MTI_WINDOW_SIZE = 4
MTI_LAYERS = 3
MTI_DROPOUT = 0.2
MUTR_NHEADS = 8
DEFAULT_FFN_DIM = 2048
MUTR_FEATURE_LEVELS = 4


class MTALayer(nn.Module):
    """Post-norm cross-attention of the words (queries, with their 1-D position) to visual tokens, then
    a post-norm ReLU FFN. words [L, B, C], visual [S, B, C] -> [L, B, C]."""

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int, dropout: float = 0.0):
        super().__init__()
        self.multihead_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout2 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.dropout3 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(self, words: torch.Tensor, visual: torch.Tensor, visual_padding_mask: torch.Tensor,
                word_pos: Optional[torch.Tensor] = None) -> torch.Tensor:
        """visual_padding_mask [B, S] (True = padding)."""
        attended = self.multihead_attn(query=with_pos(words, word_pos), key=visual, value=visual,
                                       key_padding_mask=visual_padding_mask)[0]
        words = self.norm1(words + self.dropout1(attended))
        ffn = self.linear2(self.dropout2(F.relu(self.linear1(words))))
        return self.norm2(words + self.dropout3(ffn))


class MTA(nn.Module):
    """Multi-scale temporal aggregation: a stack of MTALayers (MUTR uses one) applied in sequence."""

    def __init__(self, layer_factory, num_layers: int = 1):
        super().__init__()
        self.layers = nn.ModuleList(layer_factory() for _ in range(num_layers))

    def forward(self, words: torch.Tensor, visual: torch.Tensor, visual_padding_mask: torch.Tensor,
                word_pos: Optional[torch.Tensor] = None) -> torch.Tensor:
        for layer in self.layers:
            words = layer(words, visual, visual_padding_mask, word_pos)
        return words


class MUTR(ReferFormer):
    """MUTR / MeViS-2024 (Tapall) model. Parameter names follow the public checkpoints exactly.

    Extra arguments: ``ffn_dim`` (MTA and MTI FFN width; 2048 in the original), ``fixed_inference``
    and ``batch_time_mixing`` (see the module docstring).
    """

    # The RoBERTa pooler output is computed but unused (the MTA <s> token replaces it), so a trained text
    # encoder's pooler gets no gradient: DDP must look for unused parameters (as the original train.py).
    ddp_find_unused_parameters = True

    def __init__(self, *args, ffn_dim: int = DEFAULT_FFN_DIM, fixed_inference: bool = False,
                 batch_time_mixing: str = "train", **kwargs):
        super().__init__(*args, fusion_mode="add", **kwargs)
        if self.num_feature_levels != MUTR_FEATURE_LEVELS:
            raise ValueError(f"MUTR needs --num_feature_levels {MUTR_FEATURE_LEVELS} (the original takes the "
                             f"sentence feature from the MTA of the 4th level), got {self.num_feature_levels}")
        if batch_time_mixing not in BATCH_TIME_MIXING:
            raise ValueError(f"batch_time_mixing must be one of {BATCH_TIME_MIXING}, got {batch_time_mixing!r}")
        self.fixed_inference = fixed_inference
        self.batch_time_mixing = batch_time_mixing
        hidden = self.hidden_dim
        self.MTA = MTA(lambda: MTALayer(hidden, MUTR_NHEADS, ffn_dim), num_layers=1)
        self.mti = MTI(hidden, window_size=MTI_WINDOW_SIZE, num_frame_queries=self.num_queries,
                       num_queries=self.num_queries, nheads=MUTR_NHEADS, dim_feedforward=ffn_dim,
                       enc_layers=MTI_LAYERS, dec_layers=MTI_LAYERS, dropout=MTI_DROPOUT)

    # ----------------------------------------------------------------------------------- stages
    def aggregate_text(self, visual: VisualFeatures, text: TextEncoding, masks: Sequence[torch.Tensor]) -> torch.Tensor:
        """MTA: the words attend, level by level, to the projected but unfused visual tokens of all frames.

        masks: the padding masks of the 4 transformer levels [B*T, H_l, W_l] (from ``fuse_levels``).
        Returns the decoder query seed [B, C]: the updated ``<s>`` (first) token.
        """
        b, t = visual.batch_size, visual.num_frames
        words = text.words.tensors.transpose(0, 1)
        word_pos = self.text_pos(text.words).permute(2, 0, 1)
        inputs = [f.tensors for f in visual.features[-3:]] + [visual.features[-1].tensors]
        for level, (feature, mask) in enumerate(zip(inputs, masks)):
            tokens = rearrange(self.input_proj[level](feature), "(b t) c h w -> (t h w) b c", b=b, t=t)
            padding = rearrange(mask, "(b t) h w -> b (t h w)", b=b, t=t)
            words = self.MTA(words, tokens, padding, word_pos)
        return words[0]

    def _mixes_batch_and_time(self) -> bool:
        return self.batch_time_mixing == "always" or (self.batch_time_mixing == "train" and self.training)

    def video_queries(self, hs: torch.Tensor, b: int, t: int) -> torch.Tensor:
        """MTI on the decoder queries hs [D, B*T, Q, C] -> video queries repeated over frames [D', B*T, Q, C].

        D' = D in training and with ``fixed_inference``. MUTR INFERENCE QUIRK (the default in eval mode; the
        published numbers depend on it): MTI reads only the last decoder layer, D' = 1, so ``predict`` runs
        the heads for "layer 0": boxes from ``bbox_embed[0]`` on the first decoder layer, masks with
        ``inter_references[0]``, classes from ``class_embed[0]`` on the video queries of the last layer.
        """
        layers = hs if (self.training or self.fixed_inference) else hs[-1:]
        frame_queries = rearrange(layers, "d (b t) q c -> d b t q c", b=b, t=t)
        mixed = self._mixes_batch_and_time()
        queries = self.mti(frame_queries, mix_batch_and_time=mixed)  # [D', B, Q, C]
        if mixed:
            return queries.repeat(1, t, 1, 1)  # (t b) order, read as (b t) downstream: the original's tiling
        return repeat(queries, "d b q c -> d (b t) q c", t=t)

    def decode(self, visual: VisualFeatures, text: TextEncoding, image_sizes: torch.Tensor) -> Dict:
        """As ``ReferFormer.decode`` (same outputs); in eval mode also ``frame_queries`` [B, D, T, Q, C],
        the per-frame decoder queries of every layer (input of ``inference_long_term``)."""
        b, t = visual.batch_size, visual.num_frames
        srcs, masks, poses = self.fuse_levels(visual, text)
        seed = self.aggregate_text(visual, text, masks)
        tgt = repeat(seed, "b c -> (b t) q c", t=t, q=self.num_queries)
        hs, memory, init_reference, inter_references = self.transformer(srcs, tgt, masks, poses,
                                                                        self.query_embed.weight)
        out = self.predict(visual, text, image_sizes, hs, memory, init_reference, inter_references,
                           object_hs=self.video_queries(hs, b, t))
        if not self.training:
            out["frame_queries"] = rearrange(hs, "d (b t) q c -> b d t q c", b=b, t=t)
        return out

    # ----------------------------------------------------------------------- MeViS-2024 re-scoring
    def inference_long_term(self, frame_queries: List[torch.Tensor]) -> torch.Tensor:
        """Class logits of a whole video from its chunks' ``frame_queries`` (eval-mode ``decode`` outputs).

        frame_queries: chunks [B, D, T_i, Q, C] in time order; they are concatenated along time and MTI
        runs once over the whole video. Returns logits [B, T, Q, K], T = sum T_i (the same for every
        frame: one video-level prediction per query).
        """
        if self.training:
            raise RuntimeError("inference_long_term runs in eval mode (call model.eval())")
        queries = torch.cat(frame_queries, dim=2)
        b, t = queries.shape[0], queries.shape[2]
        video = self.video_queries(rearrange(queries, "b d t q c -> d (b t) q c"), b, t)
        logits = self.class_embed[video.shape[0] - 1](video[-1])
        return rearrange(logits, "(b t) q k -> b t q k", b=b, t=t)

    def rescore_video(self, outputs: Sequence, num_frames: int) -> int:
        """Inference-engine hook (contiguous sub-videos): the query chosen for the whole video from
        ``inference_long_term`` over the windows' ``extras['frame_queries']`` [D, T_i, Q, C] (time order):
        highest time-averaged sigmoid score, max over classes (MeViS-2024 ``inference_mevis.py``)."""
        device = self.query_embed.weight.device
        chunks = [o.extras["frame_queries"].to(device)[None] for o in outputs]
        total = sum(c.shape[2] for c in chunks)
        if total != num_frames:
            logger.warning("long-term re-scoring over %d frames of a %d-frame video", total, num_frames)
        logits = self.inference_long_term(chunks)[0]
        scores = logits.sigmoid().mean(0).max(-1).values
        return int(scores.argmax())


def build(args, backbone, transformer, text_encoder, source, num_classes):
    """Build (MUTR, criterion) from the options (incl. ``--mutr_fixed_inference``, ``--mutr_batch_time_mixing``,
    ``--mutr_ffn_dim``)."""
    model = MUTR(backbone, transformer, text_encoder, source, **core_model_kwargs(args, num_classes),
                 ffn_dim=args.mutr_ffn_dim, fixed_inference=args.mutr_fixed_inference,
                 batch_time_mixing=args.mutr_batch_time_mixing)
    criterion = SetCriterion(num_classes, build_matcher(args, num_classes), build_weight_dict(args),
                             focal_alpha=args.focal_alpha)
    return model, criterion
