"""ReferFormer: language as queries for referring video object segmentation.

The forward pass is split into stages so inference can share the text-independent work:
``encode_video`` (visual backbone, once per video window), ``encode_text`` (RoBERTa, batched)
and ``decode`` (early fusion, deformable transformer, heads; all expressions of a video in one
batch). ``forward`` composes them, so training and the reference fixtures see one function.
"""
import copy
import math
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn

from rvos.util.misc import NestedTensor, interpolate_mask, inverse_sigmoid, nested_tensor_from_videos_list

from .backbones.position_encoding import PositionEmbeddingSine1D
from .criterion import SetCriterion, build_weight_dict
from .fusion import VisionLanguageFusionModule
from .layers import MLP, FeatureResizer
from .mask_head import DynamicMaskHead, dynamic_masks
from .matcher import build_matcher
from .pixel_decoder import CrossModalFPNDecoder
from .text_encoder import TextEncoderSource, TextEncoding, build_roberta, tokenize
from .variants import Variant



@dataclass
class VisualFeatures:
    """Backbone output for B videos of T frames (N = B*T, frames ordered (b t)).

    features: 4 levels (strides 4..32), tensors [N, C_l, H_l, W_l], masks [N, H_l, W_l];
    pos: [N, hidden, H_l, W_l] per level; pixel_mask: input padding mask [N, H, W].
    """
    features: List[NestedTensor]
    pos: List[torch.Tensor]
    pixel_mask: torch.Tensor
    num_frames: int

    @property
    def batch_size(self) -> int:
        return self.pixel_mask.shape[0] // self.num_frames

    def select_frames(self, frame_index: torch.Tensor) -> "VisualFeatures":
        """Keep flat frame rows ``frame_index`` (e.g. one annotated frame per video) -> T = len / B."""
        feats = [NestedTensor(f.tensors.index_select(0, frame_index), f.mask.index_select(0, frame_index))
                 for f in self.features]
        pos = [p.index_select(0, frame_index) for p in self.pos]
        t = frame_index.numel() // self.batch_size
        return VisualFeatures(feats, pos, self.pixel_mask.index_select(0, frame_index), t)

    def repeat_videos(self, counts: Sequence[int]) -> "VisualFeatures":
        """Repeat video i ``counts[i]`` times along the batch (one copy per expression)."""
        t = self.num_frames
        index = torch.cat([torch.arange(i * t, (i + 1) * t).repeat(c) for i, c in enumerate(counts)])
        index = index.to(self.pixel_mask.device)
        return VisualFeatures([NestedTensor(f.tensors[index], f.mask[index]) for f in self.features],
                              [p[index] for p in self.pos], self.pixel_mask[index], t)


class ReferFormer(nn.Module):
    """The base model. Parameter names follow the public checkpoints exactly."""

    # A list of videos given to encode_video is padded to a multiple of this (ReferFormer: none).
    input_size_divisibility = 1

    def __init__(self, backbone: nn.Module, transformer: nn.Module, text_encoder: nn.Module,
                 text_source: TextEncoderSource, num_classes: int, num_queries: int, num_feature_levels: int,
                 mask_dim: int, dim_feedforward: int, controller_layers: int, dynamic_mask_channels: int,
                 aux_loss: bool = True, with_box_refine: bool = False, freeze_text_encoder: bool = False,
                 rel_coord: bool = True, fusion_mode: str = "multiply", mask_out_channels: int = 1):
        super().__init__()
        self.num_queries = num_queries
        self.transformer = transformer
        hidden_dim = transformer.d_model
        self.hidden_dim = hidden_dim
        self.num_feature_levels = num_feature_levels
        self.backbone = backbone
        self.aux_loss = aux_loss
        self.with_box_refine = with_box_refine
        self.query_embed = nn.Embedding(num_queries, hidden_dim)
        self.input_proj = self._build_input_proj(backbone.num_channels, hidden_dim, num_feature_levels)

        num_pred = transformer.decoder.num_layers
        class_embed = nn.Linear(hidden_dim, num_classes)
        bbox_embed = MLP(hidden_dim, hidden_dim, 4, 3)
        class_embed.bias.data = torch.ones(num_classes) * -math.log((1 - 0.01) / 0.01)
        nn.init.constant_(bbox_embed.layers[-1].weight, 0)
        nn.init.constant_(bbox_embed.layers[-1].bias, 0)
        if with_box_refine:
            self.class_embed = nn.ModuleList(copy.deepcopy(class_embed) for _ in range(num_pred))
            self.bbox_embed = nn.ModuleList(copy.deepcopy(bbox_embed) for _ in range(num_pred))
            nn.init.constant_(self.bbox_embed[0].layers[-1].bias.data[2:], -2.0)
            self.transformer.decoder.bbox_embed = self.bbox_embed
        else:
            nn.init.constant_(bbox_embed.layers[-1].bias.data[2:], -2.0)
            self.class_embed = nn.ModuleList([class_embed] * num_pred)
            self.bbox_embed = nn.ModuleList([bbox_embed] * num_pred)

        self.text_source = text_source
        self._tokenizer = None
        self.text_encoder = text_encoder
        self.freeze_text_encoder = freeze_text_encoder
        if freeze_text_encoder:
            self.text_encoder.requires_grad_(False)
        self.build_text_projection(text_encoder.config.hidden_size, hidden_dim)
        self.fusion_module = VisionLanguageFusionModule(d_model=hidden_dim, nhead=8, mode=fusion_mode)
        self.text_pos = PositionEmbeddingSine1D(hidden_dim, normalize=True)

        self.build_mask_features(backbone.num_channels, hidden_dim, mask_dim, dim_feedforward)
        self.mask_head = DynamicMaskHead(mask_dim, dynamic_mask_channels, controller_layers, rel_coord,
                                         out_channels=mask_out_channels)
        self.controller = MLP(hidden_dim, hidden_dim, self.mask_head.num_params, 3)
        for layer in self.controller.layers:
            nn.init.zeros_(layer.bias)
            nn.init.xavier_uniform_(layer.weight)

    def build_text_projection(self, text_dim: int, hidden_dim: int) -> None:
        """The modules of ``project_text``: one ``resizer`` shared by words and sentence."""
        self.resizer = FeatureResizer(text_dim, hidden_dim, dropout=0.1)

    def build_mask_features(self, backbone_channels: Sequence[int], hidden_dim: int, mask_dim: int,
                            dim_feedforward: int) -> None:
        """The modules of ``mask_features`` and their stride: the cross-modal FPN ``pixel_decoder`` (4)."""
        feature_channels = [backbone_channels[0]] + 3 * [hidden_dim]
        self.pixel_decoder = CrossModalFPNDecoder(feature_channels, conv_dim=hidden_dim, mask_dim=mask_dim,
                                                  dim_feedforward=dim_feedforward, text_pos=self.text_pos)
        self.mask_feat_stride = 4

    @staticmethod
    def _build_input_proj(channels: Sequence[int], hidden_dim: int, num_levels: int) -> nn.ModuleList:
        """1x1 conv + GN for the last 3 backbone levels, then 3x3 stride-2 convs for extra levels."""
        layers = []
        for in_channels in channels[-3:]:
            layers.append(nn.Sequential(nn.Conv2d(in_channels, hidden_dim, kernel_size=1), nn.GroupNorm(32, hidden_dim)))
        in_channels = channels[-1]
        for _ in range(num_levels - 3):
            layers.append(nn.Sequential(nn.Conv2d(in_channels, hidden_dim, kernel_size=3, stride=2, padding=1),
                                        nn.GroupNorm(32, hidden_dim)))
            in_channels = hidden_dim
        for proj in layers:
            nn.init.xavier_uniform_(proj[0].weight, gain=1)
            nn.init.constant_(proj[0].bias, 0)
        return nn.ModuleList(layers)

    # ----------------------------------------------------------------------------------- stages
    @property
    def tokenizer(self):
        if self._tokenizer is None:
            self._tokenizer = self.text_source.tokenizer()
        return self._tokenizer

    def encode_video(self, samples) -> VisualFeatures:
        """samples: NestedTensor [B, T, 3, H, W] (mask True on padding) or a list of [T, 3, H_i, W_i]
        videos (padded here to a multiple of ``input_size_divisibility``)."""
        if not isinstance(samples, NestedTensor):
            samples = nested_tensor_from_videos_list(samples, size_divisibility=self.input_size_divisibility)
        b, t = samples.tensors.shape[:2]
        features, pos = self.backbone(samples)
        return VisualFeatures(features, pos, samples.mask.flatten(0, 1), t)

    def encode_text(self, captions: List[str]) -> TextEncoding:
        """captions: B strings -> word features [B, L, hidden] (+ mask) and sentence features [B, hidden]."""
        device = self.query_embed.weight.device
        tokenized, padding_mask = tokenize(self.tokenizer, captions, device)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_text_encoder):
            encoded = self.text_encoder(**tokenized)
        words, sentence = self.project_text(encoded)
        return TextEncoding(NestedTensor(words, padding_mask), sentence)

    def project_text(self, encoded) -> Tuple[torch.Tensor, torch.Tensor]:
        """RoBERTa output -> word features [B, L, hidden] and sentence features [B, hidden]."""
        return self.resizer(encoded.last_hidden_state), self.resizer(encoded.pooler_output)

    def fuse_levels(self, visual: VisualFeatures, text: TextEncoding):
        """Project the last 3 backbone levels (+ extra strided levels) and fuse each with the words.
        Returns srcs, masks, poses: per level [N, hidden, H_l, W_l] / [N, H_l, W_l]."""
        fuse = self.level_fuser(visual, text)
        srcs, masks, poses = [], [], []
        for level, (feat, pos) in enumerate(zip(visual.features[-3:], visual.pos[-3:])):
            srcs.append(fuse(level, self.input_proj[level](feat.tensors)))
            masks.append(feat.mask)
            poses.append(pos)
        for level in range(3, self.num_feature_levels):
            src = self.input_proj[level](visual.features[-1].tensors if level == 3 else srcs[-1])
            mask = interpolate_mask(visual.pixel_mask, src.shape[-2:])
            poses.append(self.backbone[1](NestedTensor(src, mask)).to(src.dtype))
            srcs.append(fuse(level, src))
            masks.append(mask)
        return srcs, masks, poses

    def level_fuser(self, visual: VisualFeatures, text: TextEncoding) -> Callable[[int, torch.Tensor], torch.Tensor]:
        """The early fusion of one forward: ``fuse(level, src)`` maps projected features [N, hidden, H, W] of
        ``level`` (levels are fused in order) to the same shape, each visual token attending to the words."""
        b, t = visual.batch_size, visual.num_frames
        text_pos = self.text_pos(text.words).permute(2, 0, 1)
        words, word_mask = text.words.tensors.permute(1, 0, 2), text.words.mask

        def fuse(level: int, src: torch.Tensor) -> torch.Tensor:
            h, w = src.shape[-2:]
            tokens = rearrange(src, "(b t) c h w -> (t h w) b c", b=b, t=t)
            tokens = self.fusion_module(tgt=tokens, memory=words, memory_key_padding_mask=word_mask, pos=text_pos)
            return rearrange(tokens, "(t h w) b c -> (b t) c h w", t=t, h=h, w=w)

        return fuse

    def predict_boxes(self, hs: torch.Tensor, init_reference: torch.Tensor, inter_references: torch.Tensor,
                      object_hs: Optional[torch.Tensor] = None):
        """hs [D, N, Q, C] -> class logits [D', N, Q, K] and boxes [D', N, Q, 4] (cx, cy, w, h in [0, 1]).

        The box head reads ``hs``, the class head ``object_hs`` [D', N, Q, C] (default ``hs``); layer
        ``lvl < D'`` of both is predicted (MUTR: the class head reads the MTI output)."""
        object_hs = hs if object_hs is None else object_hs
        classes, boxes = [], []
        for lvl in range(object_hs.shape[0]):
            reference = inverse_sigmoid(init_reference if lvl == 0 else inter_references[lvl - 1])
            delta = self.bbox_embed[lvl](hs[lvl])
            if reference.shape[-1] == 4:
                coord = delta + reference
            else:
                coord = torch.cat([delta[..., :2] + reference, delta[..., 2:]], -1)
            classes.append(self.class_embed[lvl](object_hs[lvl]))
            boxes.append(coord.sigmoid())
        return torch.stack(classes), torch.stack(boxes)

    def decode(self, visual: VisualFeatures, text: TextEncoding, image_sizes: torch.Tensor) -> Dict:
        """Fuse, run the transformer and the heads.

        visual: B videos (``visual.batch_size`` must equal the number of captions);
        image_sizes: [B, 2] unpadded (h, w) of each video's frames.
        Returns pred_logits [B, T, Q, K], pred_boxes [B, T, Q, 4], pred_masks [B, T, Q, H/4, W/4],
        aux_outputs (all but the last decoder layer), and in eval mode reference_points [B, T, Q, 2].
        """
        t = visual.num_frames
        srcs, masks, poses = self.fuse_levels(visual, text)
        tgt = repeat(text.sentence, "b c -> (b t) q c", t=t, q=self.num_queries)
        hs, memory, init_reference, inter_references = self.transformer(srcs, tgt, masks, poses,
                                                                        self.query_embed.weight)
        return self.predict(visual, text, image_sizes, hs, memory, init_reference, inter_references)

    def predict(self, visual: VisualFeatures, text: TextEncoding, image_sizes: torch.Tensor, hs: torch.Tensor,
                memory: List[torch.Tensor], init_reference: torch.Tensor, inter_references: torch.Tensor,
                object_hs: Optional[torch.Tensor] = None) -> Dict:
        """The heads on the transformer output (the outputs of ``decode``).

        hs: decoder queries [D, B*T, Q, C]; memory: encoder output per level [B*T, C, H_l, W_l];
        init_reference [B*T, Q, 2]; inter_references [D, B*T, Q, 4]; object_hs: the queries read by the
        class head and the controller, [D', B*T, Q, C] (default ``hs``; MUTR: the MTI output).
        """
        b, t = visual.batch_size, visual.num_frames
        object_hs = hs if object_hs is None else object_hs
        classes, boxes = self.predict_boxes(hs, init_reference, inter_references, object_hs)
        classes = rearrange(classes, "l (b t) q k -> l b t q k", b=b, t=t)
        boxes = rearrange(boxes, "l (b t) q n -> l b t q n", b=b, t=t)

        mask_features = self.mask_features(visual, text, memory)
        masks_per_layer = []
        for lvl in range(object_hs.shape[0]):
            params = rearrange(self.controller(object_hs[lvl]), "(b t) q n -> b t q n", b=b, t=t)
            refs = rearrange(inter_references[lvl, ..., :2], "(b t) q n -> b t q n", b=b, t=t)
            masks_per_layer.append(dynamic_masks(self.mask_head, mask_features, params, refs, image_sizes,
                                                 self.mask_feat_stride))
        out = {"pred_logits": classes[-1], "pred_boxes": boxes[-1], "pred_masks": masks_per_layer[-1]}
        if self.aux_loss:
            out["aux_outputs"] = [{"pred_logits": c, "pred_boxes": bx, "pred_masks": m}
                                  for c, bx, m in zip(classes[:-1], boxes[:-1], masks_per_layer[:-1])]
        if not self.training:
            out["reference_points"] = rearrange(inter_references[-2, ..., :2], "(b t) q n -> b t q n", b=b, t=t)
        return out

    def forward(self, samples, captions: List[str], targets: List[dict]) -> Dict:
        """samples: NestedTensor [B, T, 3, H, W] or list of videos; captions: B strings; targets: B dicts with
        ``size`` (unpadded h, w) and optionally ``valid_indices`` (the annotated frame, A2D/JHMDB)."""
        return self.decode(*self.encode_inputs(samples, captions, targets))

    def encode_inputs(self, samples, captions: List[str], targets: List[dict]):
        """The encoders of ``forward``: (visual features, text encoding, image sizes [B, 2]); only the
        annotated frame of each clip is kept when the targets give ``valid_indices``."""
        visual = self.annotated_frames(self.encode_video(samples), targets)
        text = self.encode_text(captions)
        image_sizes = torch.stack([torch.as_tensor(tg["size"]) for tg in targets]).to(visual.pixel_mask.device)
        return visual, text, image_sizes

    @staticmethod
    def annotated_frames(visual: VisualFeatures, targets: List[dict]) -> VisualFeatures:
        """Only the annotated frame of each clip when the targets give ``valid_indices`` (A2D / JHMDB), else
        ``visual`` unchanged."""
        if "valid_indices" not in targets[0]:
            return visual
        t = visual.num_frames
        index = torch.stack([i * t + torch.as_tensor(tg["valid_indices"]).reshape(-1)[0]
                             for i, tg in enumerate(targets)]).to(visual.pixel_mask.device)
        return visual.select_frames(index)

    def mask_features(self, visual: VisualFeatures, text: TextEncoding, memory: List[torch.Tensor]) -> torch.Tensor:
        """Features the dynamic mask head runs on, [B, T, mask_dim, H / s, W / s] at ``mask_feat_stride`` s:
        the cross-modal FPN over the encoder memory and the stride-4 backbone level."""
        b, t = visual.batch_size, visual.num_frames
        mask_features = self.pixel_decoder(visual.features, text.words, visual.pos, memory, nf=t)
        return rearrange(mask_features, "(b t) c h w -> b t c h w", b=b, t=t)



def core_model_kwargs(args, num_classes: int) -> dict:
    """Constructor arguments every variant shares with :class:`ReferFormer`, from the options."""
    return dict(num_classes=num_classes, num_queries=args.num_queries, num_feature_levels=args.num_feature_levels,
                mask_dim=args.mask_dim, dim_feedforward=args.dim_feedforward,
                controller_layers=args.controller_layers, dynamic_mask_channels=args.dynamic_mask_channels,
                aux_loss=args.aux_loss, with_box_refine=args.with_box_refine,
                freeze_text_encoder=args.freeze_text_encoder, rel_coord=args.rel_coord)


def core_criterion(args, num_classes: int) -> SetCriterion:
    """ReferFormer's criterion (Hungarian matching, focal / L1 / GIoU / mask-focal / dice losses) from the options."""
    return SetCriterion(num_classes, build_matcher(args, num_classes), build_weight_dict(args),
                        focal_alpha=args.focal_alpha)


def build(args, backbone, transformer, text_encoder, source, num_classes):
    """(ReferFormer, its criterion) from the options and the shared parts."""
    model = ReferFormer(backbone, transformer, text_encoder, source, **core_model_kwargs(args, num_classes))
    return model, core_criterion(args, num_classes)


VARIANT = Variant(name="referformer", builder="rvos.models.referformer:build")
