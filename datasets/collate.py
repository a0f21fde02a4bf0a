"""Batching of ``(clip, target)`` samples."""
from typing import List, Sequence, Tuple

import torch

from rvos.models.tfvos import PROMPT_FRAMES_KEY, PROMPT_MASK_KEY
from rvos.util.misc import NestedTensor, nested_tensor_from_videos_list

SIZE_DIVISIBILITY = 32


def collate_fn(batch: Sequence[Tuple[torch.Tensor, dict]]) -> Tuple[NestedTensor, List[dict]]:
    """Samples ``(clip [T, 3, H_i, W_i], target)`` -> (NestedTensor [B, T, 3, H, W] with padding mask
    [B, T, H, W] (True on padding), list of the B target dicts). H and W are the largest sizes rounded up
    to a multiple of 32; frames are padded at the bottom and right with zeros.

    Targets with a prompt clip (``prompt_frames``, TFVOS) get it padded the same way but on its own, as the
    original collate pads its ``pre_imgs``: ``prompt_frames`` becomes row i of the padded prompt batch
    [T, 3, H', W'] and ``prompt_mask`` its padding mask [T, H', W'].
    """
    if not batch:
        raise ValueError("collate_fn got an empty batch")
    clips, targets = zip(*batch)
    targets = list(targets)
    if PROMPT_FRAMES_KEY in targets[0]:
        prompts = nested_tensor_from_videos_list([t[PROMPT_FRAMES_KEY] for t in targets],
                                                 size_divisibility=SIZE_DIVISIBILITY)
        targets = [dict(t, **{PROMPT_FRAMES_KEY: frames, PROMPT_MASK_KEY: mask})
                   for t, frames, mask in zip(targets, prompts.tensors, prompts.mask)]
    return nested_tensor_from_videos_list(clips, size_divisibility=SIZE_DIVISIBILITY), targets
