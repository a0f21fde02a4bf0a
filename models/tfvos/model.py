"""TFVOS (ACM MM 2024): ReferFormer conditioned on a prompt image (jsjei/TF2 ``models/tf2.py: TF_2``).

Differences to the ReferFormer core (docs: MODEL_FAMILY.md section 2.4, docs/TFVOS.md):

* A prompt clip (for each frame, another frame of the video with everything outside the referred object's mask
  set to zero) goes through the SAME backbone, input projections (with the extra stride-64 level), position
  encodings, multiplicative text early fusion and deformable encoder as the frames, giving the prompt memory.
* Every decoder layer runs self-attention, cross-attention over the prompt memory, then cross-attention over
  the frame memory, with the same ``cross_attn`` module and ``norm1`` and the same reference points, then the
  FFN (``DeformableTransformer.decode`` with the memories ``[prompt, frame]``).
* Heads, pixel decoder (frame features and frame memory only), dynamic mask head, matcher and losses are
  ReferFormer's. No parameter is added: the state dict has exactly ReferFormer's keys.

Without a prompt, ``decode`` / ``forward`` are ReferFormer's (the decoder layers skip the prompt
cross-attention): the whole-video pass of key-frame inference, and what a TFVOS checkpoint run as
``--model referformer`` computes.

Behaviour of the original code reproduced by default:

* TFVOS QUIRK (prompt valid ratios): both cross-attentions scale the reference points by the FRAMES' valid
  ratios; the prompts' own ratios are computed but unused. It changes the outputs only when the prompts are
  padded differently from their frames (the original training, whose prompts are transformed independently
  of their clip). ``own_prompt_valid_ratios=True`` (``--tfvos_own_prompt_valid_ratios``) uses the prompts'.
"""
from dataclasses import replace
from typing import Dict, List, Optional

import torch
from einops import repeat

from rvos.util.misc import NestedTensor

from ..referformer import ReferFormer, VisualFeatures, core_criterion, core_model_kwargs
from ..text_encoder import TextEncoding
from . import PROMPT_FRAMES_KEY, PROMPT_MASK_KEY


class TFVOS(ReferFormer):
    """The TFVOS model; ``own_prompt_valid_ratios`` corrects the prompt valid-ratio quirk (module docstring)."""

    def __init__(self, *args, own_prompt_valid_ratios: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.own_prompt_valid_ratios = own_prompt_valid_ratios

    # ----------------------------------------------------------------------------------- stages
    def encode_prompts(self, prompts, targets: List[dict]) -> Optional[VisualFeatures]:
        """Backbone features of the prompt clips, or None without prompts.

        prompts: a NestedTensor [B, T, 3, H, W], a list of B clips [T, 3, H_i, W_i] (padded here like
        ``encode_video``, i.e. not at all for one clip: the original key-frame inference), or None: then the
        targets' ``prompt_frames`` / ``prompt_mask`` (training batches, padded by the collate function) when
        present. Only the annotated frames are kept when the targets give ``valid_indices``.
        """
        if prompts is None and PROMPT_FRAMES_KEY in targets[0]:
            prompts = NestedTensor(torch.stack([t[PROMPT_FRAMES_KEY] for t in targets]),
                                   torch.stack([t[PROMPT_MASK_KEY] for t in targets]))
        if prompts is None:
            return None
        return self.annotated_frames(self.encode_video(prompts), targets)

    def decode(self, visual: VisualFeatures, text: TextEncoding, image_sizes: torch.Tensor,
               prompt: Optional[VisualFeatures] = None) -> Dict:
        """ReferFormer's ``decode`` with the prompt branch: ``prompt`` holds one prompt per frame of ``visual``
        (same B and T; its spatial size may differ). Without it, ReferFormer's ``decode`` exactly."""
        if prompt is None:
            return super().decode(visual, text, image_sizes)
        if (prompt.batch_size, prompt.num_frames) != (visual.batch_size, visual.num_frames):
            raise ValueError(f"{prompt.batch_size} x {prompt.num_frames} prompt frames for {visual.batch_size} "
                             f"videos of {visual.num_frames} frames: TFVOS needs one prompt per frame")
        srcs, masks, poses = self.fuse_levels(visual, text)
        prompt_levels = self.fuse_levels(prompt, text)
        # The original encodes the prompt levels first, with the same encoder and level embeddings.
        prompt_memory = self.transformer.encode(*prompt_levels)
        memory = self.transformer.encode(srcs, masks, poses)
        if not self.own_prompt_valid_ratios:
            # TFVOS QUIRK: the prompt cross-attention uses the frames' valid ratios (module docstring).
            prompt_memory = replace(prompt_memory, valid_ratios=memory.valid_ratios)
        tgt = repeat(text.sentence, "b c -> (b t) q c", t=visual.num_frames, q=self.num_queries)
        hs, memory_maps, init_reference, inter_references = self.transformer.decode(
            tgt, [prompt_memory, memory], self.query_embed.weight)
        return self.predict(visual, text, image_sizes, hs, memory_maps, init_reference, inter_references)

    def forward(self, samples, captions: List[str], targets: List[dict], prompts=None) -> Dict:
        """ReferFormer's ``forward`` with the prompt clips ``prompts`` (see ``encode_prompts``; the original's
        ``TF_2.forward(samples, pre_imgs, captions, targets)``). Without prompts: ReferFormer's forward."""
        visual, text, image_sizes = self.encode_inputs(samples, captions, targets)
        return self.decode(visual, text, image_sizes, self.encode_prompts(prompts, targets))


def build(args, backbone, transformer, text_encoder, source, num_classes):
    """(TFVOS, ReferFormer's criterion) from the options (incl. ``--tfvos_own_prompt_valid_ratios``)."""
    model = TFVOS(backbone, transformer, text_encoder, source, **core_model_kwargs(args, num_classes),
                  own_prompt_valid_ratios=getattr(args, "tfvos_own_prompt_valid_ratios", False))
    return model, core_criterion(args, num_classes)
