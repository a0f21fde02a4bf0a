"""SgMg (ICCV 2023, "segment-and-optimize"): the ReferFormer core with

* spectrum-guided cross-modal fusion: every level's early fusion is wrapped by ``input_fft[l]`` before and
  ``input_fft_post[l]`` after (``SpectrumFilter``); one Gaussian filter is chained through the 8 blocks;
* no pixel decoder: the mask features are the encoder memory at strides 8/16/32, bicubically resized to
  stride 8 and summed (so ``--mask_dim`` must equal ``--hidden_dim``);
* conditional patch kernels: the dynamic head has 2 layers of 16 channels and no 1-channel output; the
  16 channels are a 4x4 patch, ``pixel_shuffle(4)`` gives a stride-2 mask (``pred_masks_low``);
* the multi-granularity segmentation optimizer ``mask_refine`` (MSO) turns a query's patch mask into a
  stride-1 mask. It refines only the queries the Hungarian matcher selected (training: the matching runs in
  ``forward`` on the stride-2 masks and the indices go to the criterion with the outputs) or, at inference,
  the best query (Ref-YouTube-VOS / DAVIS / MeViS; A2D, JHMDB and RefCOCO refine every query);
* its own text-encoder wrapper (``text_encoder.text_backbone``) and separate word / sentence projections
  (``text_proj``, ``sentence_proj``);
* a list of videos is padded to a multiple of 16 in eval mode.
"""
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..layers import FeatureResizer
from ..matcher import build_matcher
from ..referformer import ReferFormer, VisualFeatures, core_model_kwargs
from .criterion import SgMgCriterion, sgmg_weight_dict
from .modules import MultiGranularityOptimizer, SgMgTextEncoder, SpectrumFilter
from ..text_encoder import TextEncoding

PATCH_CHANNELS = 16  # a 4x4 patch per stride-8 location
PATCH_SIZE = 4
EVAL_SIZE_DIVISIBILITY = 16
SIGMA = 7.0


def refines_every_query(dataset_file: str) -> bool:
    """A2D-Sentences, JHMDB-Sentences and RefCOCO evaluation score every query; the video benchmarks
    (Ref-YouTube-VOS, Ref-DAVIS, MeViS, ...) take only the best one (as the original forward decides)."""
    return dataset_file in ("a2d", "jhmdb") or "refcoco" in dataset_file


def select_query(x: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
    """x [B, T, Q, ...], query [B] -> x[b, :, query[b]] as [B, T, 1, ...]."""
    return x[torch.arange(x.shape[0], device=x.device), :, query.to(x.device)].unsqueeze(2)


def matched_rows(x: torch.Tensor, indices) -> torch.Tensor:
    """x [B, T, Q, ...] and one matched query per clip -> that query's rows [B, T, ...]."""
    if any(len(src) != 1 for src, _ in indices):
        raise ValueError("SgMg expects exactly one matched query per clip (one referred object)")
    query = torch.cat([src for src, _ in indices])
    return select_query(x, query).squeeze(2)


def patches_to_masks(patches: torch.Tensor) -> torch.Tensor:
    """[..., 16, h, w] patch logits -> [..., 4h, 4w] mask logits (``pixel_shuffle(4)``)."""
    return F.pixel_shuffle(patches, PATCH_SIZE).squeeze(-3)


class SgMg(ReferFormer):
    """SgMg on the ReferFormer core; stages and outputs as ``ReferFormer`` except for the masks:

    * training (``forward`` with targets): ``pred_logits`` [B, T, Q, K], ``pred_boxes`` [B, T, Q, 4] of every
      query; ``pred_masks`` [B, T, H, W] (stride 1, after MSO) and ``pred_masks_low`` [B, T, H/2, W/2] of the
      matched query; ``matched_indices`` (per clip (query, target) indices); the same per auxiliary layer
      under ``aux_outputs``;
    * eval, best query only: ``pred_logits`` [B, T, 1, K], ``pred_boxes`` [B, T, 1, 4], ``reference_points``
      [B, T, 1, 2], ``pred_masks`` [B, T, 1, H, W] of the query with the best time-averaged score;
    * eval, every query (A2D / JHMDB / RefCOCO): the same with Q queries.
    H, W is the padded input size; there are no ``aux_outputs`` in eval mode.
    """

    def __init__(self, backbone: nn.Module, transformer: nn.Module, text_encoder: nn.Module, text_source,
                 num_classes: int, num_queries: int, num_feature_levels: int, mask_dim: int, dim_feedforward: int,
                 controller_layers: int, dynamic_mask_channels: int, matcher: nn.Module,
                 aux_loss: bool = True, with_box_refine: bool = False, freeze_text_encoder: bool = False,
                 rel_coord: bool = True, refine_every_query: bool = False):
        if mask_dim != transformer.d_model:
            raise ValueError(f"SgMg's mask features are the summed encoder memory ({transformer.d_model} channels): "
                             f"--mask_dim {mask_dim} must equal --hidden_dim {transformer.d_model}")
        if dynamic_mask_channels != PATCH_CHANNELS:
            raise ValueError(f"SgMg's patch kernels have {PATCH_CHANNELS} channels (a 4x4 patch): "
                             f"--dynamic_mask_channels must be {PATCH_CHANNELS}, got {dynamic_mask_channels} "
                             f"(SgMg's own defaults are --controller_layers 2 --dynamic_mask_channels 16, as in "
                             f"configs/sgmg/*.yaml)")
        super().__init__(backbone, transformer, SgMgTextEncoder(text_encoder), text_source, num_classes,
                         num_queries, num_feature_levels, mask_dim, dim_feedforward, controller_layers,
                         dynamic_mask_channels, aux_loss=aux_loss, with_box_refine=with_box_refine,
                         freeze_text_encoder=freeze_text_encoder, rel_coord=rel_coord,
                         mask_out_channels=dynamic_mask_channels)
        self.input_fft = nn.ModuleList(SpectrumFilter(self.hidden_dim, SIGMA) for _ in range(num_feature_levels))
        self.input_fft_post = nn.ModuleList(SpectrumFilter(self.hidden_dim, SIGMA)
                                            for _ in range(num_feature_levels))
        self.mask_refine = MultiGranularityOptimizer(dynamic_mask_channels, backbone.num_channels[:2])
        self.matcher = matcher
        self.refine_every_query = refine_every_query

    @property
    def input_size_divisibility(self) -> int:
        """A list of videos is padded to a multiple of 16 in eval mode (none in training)."""
        return 1 if self.training else EVAL_SIZE_DIVISIBILITY

    # ------------------------------------------------------------------------ base-model hooks
    def build_text_projection(self, text_dim: int, hidden_dim: int) -> None:
        self.text_proj = FeatureResizer(text_dim, hidden_dim, dropout=0.1)
        self.sentence_proj = FeatureResizer(text_dim, hidden_dim, dropout=0.1)

    def project_text(self, encoded):
        return self.text_proj(encoded.last_hidden_state), self.sentence_proj(encoded.pooler_output)

    def build_mask_features(self, backbone_channels, hidden_dim: int, mask_dim: int, dim_feedforward: int) -> None:
        self.mask_feat_stride = 8

    def mask_features(self, visual: VisualFeatures, text: TextEncoding, memory: List[torch.Tensor]) -> torch.Tensor:
        """Encoder memory at strides 8/16/32, each bicubically resized to stride 8, summed -> [B, T, C, H/8, W/8]."""
        size = memory[0].shape[-2:]
        summed = sum(F.interpolate(m, size=size, mode="bicubic", align_corners=False) for m in memory)
        return summed.reshape(visual.batch_size, visual.num_frames, *summed.shape[1:])

    def level_fuser(self, visual: VisualFeatures, text: TextEncoding):
        """Early fusion between two spectrum filters per level; the Gaussian filter is chained from block to
        block (input_fft[0] -> input_fft_post[0] -> input_fft[1] -> ...) within one forward."""
        fuse = super().level_fuser(visual, text)
        gaussian: Optional[torch.Tensor] = None

        def spectral_fuse(level: int, src: torch.Tensor) -> torch.Tensor:
            nonlocal gaussian
            src, gaussian = self.input_fft[level](src, gaussian)
            src = fuse(level, src)
            src, gaussian = self.input_fft_post[level](src, gaussian)
            return src

        return spectral_fuse

    # ------------------------------------------------------------------------ heads
    def forward(self, samples, captions: List[str], targets: List[dict]) -> Dict:
        """As ``ReferFormer.forward``; in training the targets (``labels``, ``boxes``, ``masks``, ``valid``) are
        matched to the queries inside the forward."""
        visual, text, image_sizes = self.encode_inputs(samples, captions, targets)
        return self.decode(visual, text, image_sizes, targets if self.training else None)

    def decode(self, visual: VisualFeatures, text: TextEncoding, image_sizes: torch.Tensor,
               targets: Optional[List[dict]] = None) -> Dict:
        """``ReferFormer.decode`` followed by SgMg's mask stage (see the class docstring); ``targets`` are
        required in training mode."""
        if self.training and targets is None:
            raise ValueError("SgMg matches queries to targets inside its forward in training mode: call "
                             "model(samples, captions, targets) or decode(..., targets)")
        out = super().decode(visual, text, image_sizes)
        if self.training:
            return self._training_outputs(out, visual, targets)
        return self._inference_outputs(out, visual)

    def refine(self, patches: torch.Tensor, visual: VisualFeatures) -> torch.Tensor:
        """One query per clip: patch logits [B, T, 16, H/8, W/8] -> MSO -> mask logits [B, T, H, W] (stride 1)."""
        b, t = patches.shape[:2]
        refined = self.mask_refine(patches.flatten(0, 1), visual.features[0].tensors, visual.features[1].tensors)
        return patches_to_masks(refined).unflatten(0, (b, t))

    def _training_outputs(self, out: Dict, visual: VisualFeatures, targets: List[dict]) -> Dict:
        """Match every layer (final first) on its stride-2 masks, then refine and keep the matched query only."""
        layers = [out] + out.pop("aux_outputs", [])
        patches = [layer.pop("pred_masks") for layer in layers]
        low = [patches_to_masks(p) for p in patches]
        indices = [self.matcher({"pred_logits": layer["pred_logits"], "pred_boxes": layer["pred_boxes"],
                                 "pred_masks": masks}, targets) for layer, masks in zip(layers, low)]
        for layer, layer_patches, layer_low, layer_indices in zip(layers, patches, low, indices):
            layer["matched_indices"] = layer_indices
            layer["pred_masks"] = self.refine(matched_rows(layer_patches, layer_indices), visual)
            layer["pred_masks_low"] = matched_rows(layer_low, layer_indices)
        if len(layers) > 1:
            out["aux_outputs"] = layers[1:]
        return out

    def _inference_outputs(self, out: Dict, visual: VisualFeatures) -> Dict:
        patches = out["pred_masks"]
        if self.refine_every_query:
            masks = [self.refine(patches[:, :, q], visual) for q in range(patches.shape[2])]
            return {"pred_logits": out["pred_logits"], "pred_boxes": out["pred_boxes"],
                    "reference_points": out["reference_points"], "pred_masks": torch.stack(masks, dim=2)}
        max_scores, _ = out["pred_logits"].sigmoid().mean(1).max(-1)
        _, best = max_scores.max(-1)
        return {"pred_logits": select_query(out["pred_logits"], best),
                "pred_boxes": select_query(out["pred_boxes"], best),
                "reference_points": select_query(out["reference_points"], best),
                "pred_masks": self.refine(select_query(patches, best).squeeze(2), visual).unsqueeze(2)}


def build(args, backbone, transformer, text_encoder, source, num_classes):
    """(SgMg model, its criterion) from the parsed options (see ``models.variants``)."""
    text_backbone = getattr(args, "text_backbone", "Roberta")
    if text_backbone != "Roberta":
        raise ValueError(f"--text_backbone {text_backbone!r}: SgMg supports only 'Roberta'")
    matcher = build_matcher(args, num_classes, mask_out_stride=2)
    model = SgMg(backbone, transformer, text_encoder, source, **core_model_kwargs(args, num_classes), matcher=matcher,
                 refine_every_query=refines_every_query(args.dataset_file))
    criterion = SgMgCriterion(num_classes, matcher, sgmg_weight_dict(args), focal_alpha=args.focal_alpha)
    return model, criterion
