"""Batching of ``(clip, target)`` samples."""
from typing import List, Sequence, Tuple

import torch

from rvos.util.misc import NestedTensor, nested_tensor_from_videos_list

SIZE_DIVISIBILITY = 32


def collate_fn(batch: Sequence[Tuple[torch.Tensor, dict]]) -> Tuple[NestedTensor, List[dict]]:
    """Samples ``(clip [T, 3, H_i, W_i], target)`` -> (NestedTensor [B, T, 3, H, W] with padding mask
    [B, T, H, W] (True on padding), list of the B target dicts). H and W are the largest sizes rounded up
    to a multiple of 32; frames are padded at the bottom and right with zeros.
    """
    if not batch:
        raise ValueError("collate_fn got an empty batch")
    clips, targets = zip(*batch)
    return nested_tensor_from_videos_list(clips, size_divisibility=SIZE_DIVISIBILITY), list(targets)
