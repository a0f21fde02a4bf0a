"""DsHmp (He and Ding, CVPR 2024): decoupled static and hierarchical motion perception for referring video
segmentation, on our own parts, without detectron2.

Pipeline (MODEL_FAMILY.md section 2.5): RoBERTa encodes the sentence (fixed 40 slots); the part-of-speech
decoupling (``text.py``) splits its words into static and motion tokens; the Swin backbone fuses the words into
every stage (``backbone.py``); Mask2Former's deformable pixel decoder (``pixel_decoder.py``) and the frame decoder
with static cues (``frame_decoder.py``) give per-frame queries; hierarchical motion perception and the video
decoder (``motion.py``) turn them into video queries whose masks are dot products with stride-4 mask features.

Parameter names are those of the released checkpoint (``backbone.*``, ``sem_seg_head.pixel_decoder.*``,
``sem_seg_head.predictor.*``, ``vita_module.*``, ``criterion.*``, ``vita_criterion.*`` with the contrastive memory
bank, ``resizer.*``, ``text_encoder.*``).

Behaviour of the original reproduced by default, each with the corrected path as an option:

* DSHMP QUIRK (text padding): token ids are padded to 40 with 0 (``<s>``), not ``<pad>``; the padded slots then
  get positions 2..41 and hidden states of their own (masked as keys everywhere).
  ``pad_with_pad_token=True`` pads with the tokenizer's pad id.
* DSHMP QUIRK (pixel std): the released config normalises the blue channel by 57.37 where ImageNet (and its
  base config) use 57.375; frames normalised with the ImageNet statistics are rescaled accordingly.
  ``fixed_pixel_std=True`` keeps the ImageNet statistics.
* DSHMP QUIRK (track order): see ``motion.py`` (``fixed_track_order``).
* Batch 1 only (lifted, not a choice): each video of a batch has its own static / motion tokens and contrastive
  anchor; for batch 1 the original's numbers.
"""
import math
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..backbones.build import backbone_family, resolve_backbone_config
from ..layers import FeatureResizer
from ..text_encoder import TextEncoderSource
from .backbone import LanguageSwin
from .checkpoint import adapt_mask2former_state, is_mask2former_layout
from .criterion import FrameCriterion, MemoryBank, PointMatcher, VideoCriterion
from .frame_decoder import FrameDecoder
from .motion import VideoModule
from .pixel_decoder import PixelDecoder
from .text import SentenceEncoder, SpacyTagger, gather_tokens, normalize_sentence

SIZE_DIVISIBILITY = 32
IMAGENET_STD_BLUE = 0.225 * 255
DSHMP_STD_BLUE = 57.37
# The original keeps the mask features of longer videos on the CPU (``to_store``).
KEEP_ON_DEVICE_FRAMES = 36


@dataclass
class DsHmpText:
    """Encoded sentences (B of them, L = 40 slots).

    raw: RoBERTa's last hidden states [B, L, D] (the backbone's words); words / sentence: resized [B, L, C] / [B, C];
    padding [B, L] (True = padding slot); static / motion tokens [B, N, C] with their padding [B, N] (None: none).
    """

    raw: torch.Tensor
    words: torch.Tensor
    sentence: torch.Tensor
    padding: torch.Tensor
    static: torch.Tensor
    static_padding: Optional[torch.Tensor]
    motion: torch.Tensor
    motion_padding: Optional[torch.Tensor]


def none_if_unpadded(padding: torch.Tensor) -> Optional[torch.Tensor]:
    """A key-padding mask, or None when nothing is padded (the original passes no mask for one sentence)."""
    return padding if bool(padding.any()) else None


class SemSegHead(nn.Module):
    """The container of the released layout: ``sem_seg_head.pixel_decoder`` and ``sem_seg_head.predictor``."""

    def __init__(self, pixel_decoder: PixelDecoder, predictor: FrameDecoder):
        super().__init__()
        self.pixel_decoder = pixel_decoder
        self.predictor = predictor


class DsHmp(nn.Module):
    """The DsHmp model. Training: ``forward(samples, captions, targets)`` -> frame and video outputs for
    ``DsHmpCriterion``; inference: ``segment_video`` (chunked, one video decoder per video)."""

    # The released checkpoint's memory bank is a buffer updated identically on every process (all-gathered), so
    # DDP must not broadcast it at every forward (detectron2: broadcast_buffers=False).
    ddp_broadcast_buffers = False
    input_size_divisibility = SIZE_DIVISIBILITY

    def __init__(self, backbone: LanguageSwin, sem_seg_head: SemSegHead, criterion: FrameCriterion,
                 vita_module: VideoModule, vita_criterion: VideoCriterion, text_encoder: nn.Module,
                 text_source: TextEncoderSource, tagger, num_text_tokens: int = 40, run_chunk: int = 18,
                 interpolate_chunk: int = 5, output_threshold: float = 0.5, pad_with_pad_token: bool = False,
                 fixed_pixel_std: bool = False, recompute_mask_features: bool = False):
        super().__init__()
        self.backbone = backbone
        self.sem_seg_head = sem_seg_head
        self.criterion = criterion
        self.vita_module = vita_module
        self.vita_criterion = vita_criterion
        hidden = vita_module.query_feat.weight.shape[1]
        self.resizer = FeatureResizer(text_encoder.config.hidden_size, hidden, dropout=0.1)
        self.text_encoder = text_encoder
        self.text_encoder.requires_grad_(False)
        self.text_source = text_source
        self.tagger = tagger
        self.num_text_tokens = num_text_tokens
        self.run_chunk = run_chunk
        self.interpolate_chunk = interpolate_chunk
        self.output_threshold = output_threshold
        self.pad_with_pad_token = pad_with_pad_token
        self.recompute_mask_features = recompute_mask_features
        scale = torch.ones(3)
        if not fixed_pixel_std:
            scale[2] = IMAGENET_STD_BLUE / DSHMP_STD_BLUE
        self.register_buffer("std_correction", scale.view(1, 3, 1, 1), persistent=False)
        self._sentences: Optional[SentenceEncoder] = None

    def no_weight_decay(self) -> List[str]:
        """The parameters the original trains without weight decay (detectron2's WEIGHT_DECAY_NORM and
        Mask2Former's WEIGHT_DECAY_EMBED, both 0, and Swin's relative position tables)."""
        norms = (nn.GroupNorm, nn.LayerNorm, nn.InstanceNorm1d, nn.InstanceNorm2d, nn.BatchNorm2d, nn.Embedding)
        names = [f"{module_name}.{name}".lstrip(".") for module_name, module in self.named_modules()
                 if isinstance(module, norms) for name, _ in module.named_parameters(recurse=False)]
        return names + [n for n, _ in self.named_parameters() if "relative_position_bias_table" in n]

    def adapt_pretrained_state(self, state: Dict[str, torch.Tensor]
                               ) -> Tuple[Dict[str, torch.Tensor], Tuple[str, ...]]:
        """``--pretrained_weights`` hook: a Mask2Former checkpoint (the COCO initialisation) is adapted at load time
        (``checkpoint.py``); returns (state, key prefixes allowed to stay at their initialisation)."""
        if not is_mask2former_layout(state):
            return state, ()
        own = self.state_dict()
        return adapt_mask2former_state(state, own["sem_seg_head.predictor.query_feat.weight"].shape[0], own)

    # ------------------------------------------------------------------------------------------------ text
    @property
    def sentences(self) -> SentenceEncoder:
        if self._sentences is None:
            tokenizer = self.text_source.tokenizer()
            pad_id = tokenizer.pad_token_id if self.pad_with_pad_token else 0
            self._sentences = SentenceEncoder(tokenizer, self.tagger, self.num_text_tokens, pad_id)
        return self._sentences

    def encode_text(self, captions: Sequence[str]) -> DsHmpText:
        """B captions -> ``DsHmpText`` (captions lower-cased and whitespace-normalised as the original loader)."""
        device = self.std_correction.device
        encoded = self.sentences([normalize_sentence(c) for c in captions], device=device)
        out = self.text_encoder(encoded["ids"], attention_mask=encoded["mask"])
        words = self.resizer(out.last_hidden_state)
        sentence = self.resizer(out.pooler_output)
        static, static_padding = gather_tokens(words, encoded["static"], sentence)
        motion, motion_padding = gather_tokens(words, encoded["motion"], sentence)
        return DsHmpText(out.last_hidden_state, words, sentence, encoded["mask"] == 0, static,
                         none_if_unpadded(static_padding), motion, none_if_unpadded(motion_padding))

    # ------------------------------------------------------------------------------------------------ frames
    def normalize_input(self, frames: torch.Tensor) -> torch.Tensor:
        """Frames normalised with the ImageNet mean / std [N, 3, H, W] -> the model's normalisation."""
        return frames * self.std_correction.to(frames.dtype)

    def frame_pass(self, frames: torch.Tensor, text: DsHmpText, frames_per_video: int
                   ) -> Tuple[Dict, torch.Tensor, torch.Tensor]:
        """Backbone, pixel decoder and frame decoder on N = B * T frames [N, 3, H, W] (H, W multiples of 32) of
        B videos. Returns (frame outputs, frame queries [K, N, fQ, C], video mask features [N, C, H/4, W/4])."""
        raw = text.raw.permute(0, 2, 1).repeat_interleave(frames_per_video, dim=0)
        valid = (~text.padding).to(raw.dtype).unsqueeze(-1).repeat_interleave(frames_per_video, dim=0)
        features = self.backbone(self.normalize_input(frames), raw, valid)
        mask_features, fine, levels = self.sem_seg_head.pixel_decoder(features)
        outputs, frame_queries = self.sem_seg_head.predictor(
            levels, mask_features, text.words, text.padding, text.static, text.static_padding, frames_per_video)
        return outputs, frame_queries, self.vita_module.vita_mask_features(fine)

    def decode_video(self, frame_queries: torch.Tensor, text: DsHmpText, frames: int) -> Dict:
        return self.vita_module(frame_queries, text.words, none_if_unpadded(text.padding), text.motion,
                                text.motion_padding, frames)

    # ------------------------------------------------------------------------------------------------ training
    def forward(self, samples, captions: List[str], targets: List[dict]) -> Dict:
        """samples: NestedTensor [B, T, 3, H, W] (H, W multiples of 32, ImageNet-normalised); captions: B strings.
        Returns ``frame`` (Mask2Former outputs per frame) and ``video`` (with ``pred_masks`` [K, B, cQ, T, h, w] on
        every decoder layer)."""
        if not self.training:
            raise RuntimeError("DsHmp inference runs per video with segment_video (inference.py --model dshmp)")
        clips = samples.tensors
        b, t = clips.shape[:2]
        if clips.shape[-2] % SIZE_DIVISIBILITY or clips.shape[-1] % SIZE_DIVISIBILITY:
            raise ValueError(f"DsHmp needs frames padded to multiples of {SIZE_DIVISIBILITY}, got "
                             f"{tuple(clips.shape[-2:])}")
        text = self.encode_text(captions)
        frame_outputs, frame_queries, mask_features = self.frame_pass(clips.flatten(0, 1), text, t)
        mask_features = mask_features.view(b, t, *mask_features.shape[-3:])
        video = self.decode_video(frame_queries, text, t)
        for out in [video] + video["aux_outputs"]:
            out["pred_masks"] = torch.einsum("lbqc,btchw->lbqthw", out["pred_mask_embed"], mask_features)
        return {"frame": frame_outputs, "video": video}

    # ------------------------------------------------------------------------------------------------ inference
    def select_queries(self, logits: torch.Tensor, multi_object: bool) -> torch.Tensor:
        """Video-query logits [cQ, 2] -> the kept queries: every query whose foreground softmax passes
        ``output_threshold`` (MeViS: zero, one or several objects), else the top query."""
        scores = logits.softmax(-1)[:, 0]
        if multi_object:
            return torch.nonzero(scores > self.output_threshold).flatten()
        return scores.topk(1, sorted=False)[1]

    def _chunks(self, count: int, size: int) -> List[Tuple[int, int]]:
        return [(start, min(start + size, count)) for start in range(0, count, size)]

    def _padded(self, frames: torch.Tensor) -> torch.Tensor:
        h, w = frames.shape[-2:]
        pad_h = math.ceil(h / SIZE_DIVISIBILITY) * SIZE_DIVISIBILITY - h
        pad_w = math.ceil(w / SIZE_DIVISIBILITY) * SIZE_DIVISIBILITY - w
        return F.pad(frames, (0, pad_w, 0, pad_h))

    @torch.no_grad()
    def segment_video(self, frames, caption: str, multi_object: bool
                      ) -> Iterator[Tuple[int, int, Dict[str, torch.Tensor]]]:
        """One expression on one video: frames [T, 3, h, w] (ImageNet-normalised, unpadded), a tensor or any sequence
        whose slices are such tensors (frames normalised per chunk).

        Backbone and frame decoder run on chunks of ``run_chunk`` frames (each zero-padded to /32), then one video
        decoder on all frames. Yields, per chunk of ``interpolate_chunk`` frames, (start, end, outputs) with
        ``fg_logits`` [cQ] (log-odds of each video query's foreground softmax), ``masks`` [t, cQ, H/4, W/4] (stride 4
        of the padded input), ``kept`` (the queries to OR, see ``select_queries``) and ``top`` (the best query).
        Mask features are kept for the whole video (on the CPU beyond 36 frames, as the original) or, with
        ``recompute_mask_features``, recomputed per chunk after the video decoder (memory bounded by the chunk).
        """
        text = self.encode_text([caption])
        total = len(frames)
        device = self.std_correction.device
        store = device if total <= KEEP_ON_DEVICE_FRAMES else torch.device("cpu")
        queries, kept_features = [], []
        for start, end in self._chunks(total, self.run_chunk):
            _, frame_queries, mask_features = self.frame_pass(self._padded(frames[start:end].to(device)), text,
                                                              end - start)
            queries.append(frame_queries[-1])
            if not self.recompute_mask_features:
                kept_features.append(mask_features.to(store))
        video = self.decode_video(torch.cat(queries)[None], text, total)
        logits = video["pred_logits"][-1, 0]
        embed = video["pred_mask_embed"][-1, 0]
        fg_logits = logits[:, 0] - logits[:, 1]
        info = {"fg_logits": fg_logits, "kept": self.select_queries(logits, multi_object),
                "top": self.select_queries(logits, multi_object=False)[0]}
        del video, queries
        for run, (run_start, run_end) in enumerate(self._chunks(total, self.run_chunk)):
            if self.recompute_mask_features:
                features = self.frame_pass(self._padded(frames[run_start:run_end].to(device)), text,
                                           run_end - run_start)[2]
            else:
                features = kept_features[run].to(device)
            for start, end in self._chunks(run_end - run_start, self.interpolate_chunk):
                masks = torch.einsum("qc,tchw->tqhw", embed, features[start:end])
                yield run_start + start, run_start + end, {**info, "masks": masks}


def build_tagger(args):
    """spaCy's pipeline ``--dshmp_spacy_model`` (loaded on first use)."""
    return SpacyTagger(getattr(args, "dshmp_spacy_model", None) or "en_core_web_sm")


def build(args, backbone, transformer, text_encoder, source, num_classes):
    """(DsHmp, its criterion) from the options; the ReferFormer backbone / transformer are not used (None)."""
    from .loss import DsHmpCriterion

    if backbone_family(args.backbone) != "swin":
        raise ValueError(f"DsHmp's language-fused backbone is a 2-D Swin (swin_t_p4w7 in the release), got "
                         f"--backbone {args.backbone}")
    config = resolve_backbone_config(args.backbone, getattr(args, "backbone_config", None))
    config["use_checkpoint"] = bool(config.get("use_checkpoint") or getattr(args, "use_checkpoint", False))
    swin = LanguageSwin(text_encoder.config.hidden_size, **config)
    hidden = args.hidden_dim
    pixel_decoder = PixelDecoder(swin.num_channels, hidden, args.mask_dim, args.nheads, args.enc_layers,
                                 dropout=args.dropout)
    predictor = FrameDecoder(hidden, args.num_queries, args.nheads, args.dim_feedforward, args.dec_layers,
                             args.mask_dim, num_frame_query_layers=args.dshmp_frame_query_layers)
    point_options = dict(num_classes=1, eos_coef=args.dshmp_no_object_weight, num_points=args.dshmp_train_points,
                         oversample_ratio=args.dshmp_oversample_ratio,
                         importance_sample_ratio=args.dshmp_importance_sample_ratio)
    costs = dict(cost_class=args.set_cost_class, cost_mask=args.set_cost_mask, cost_dice=args.set_cost_dice,
                 num_points=args.dshmp_train_points)
    frame_criterion = FrameCriterion(PointMatcher(**costs), args.dshmp_frame_query_layers, **point_options)
    vita_module = VideoModule(hidden, args.num_queries, args.dshmp_video_queries, args.nheads, args.dim_feedforward,
                              args.dshmp_video_enc_layers, args.dshmp_video_dec_layers, args.dshmp_window, hidden,
                              args.mask_dim, aux_loss=args.aux_loss, fixed_track_order=args.dshmp_fixed_track_order)
    memory = MemoryBank(hidden, args.dshmp_memory_slots, args.dshmp_contrastive_samples)
    vita_criterion = VideoCriterion(PointMatcher(**costs), memory, **point_options)
    model = DsHmp(swin, SemSegHead(pixel_decoder, predictor), frame_criterion, vita_module, vita_criterion,
                  text_encoder, source, build_tagger(args), num_text_tokens=args.dshmp_text_tokens,
                  run_chunk=args.dshmp_run_chunk, interpolate_chunk=args.dshmp_interpolate_chunk,
                  output_threshold=args.dshmp_output_threshold, pad_with_pad_token=args.dshmp_pad_with_pad_token,
                  fixed_pixel_std=args.dshmp_fixed_pixel_std,
                  recompute_mask_features=args.dshmp_mask_features == "recompute")
    return model, DsHmpCriterion(model, args)
