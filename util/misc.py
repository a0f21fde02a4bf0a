"""Padded batches (``NestedTensor``) and small tensor helpers shared by models and data."""
from typing import List, Optional, Sequence

import torch
import torch.nn.functional as F


class NestedTensor:
    """A padded batch and its padding mask.

    ``tensors``: images [B, 3, H, W] or videos [B, T, 3, H, W]; ``mask``: [B, H, W] or
    [B, T, H, W], True on padding.
    """

    def __init__(self, tensors: torch.Tensor, mask: Optional[torch.Tensor]):
        self.tensors = tensors
        self.mask = mask

    def to(self, device, non_blocking: bool = False) -> "NestedTensor":
        mask = None if self.mask is None else self.mask.to(device, non_blocking=non_blocking)
        return NestedTensor(self.tensors.to(device, non_blocking=non_blocking), mask)

    def decompose(self):
        return self.tensors, self.mask

    def __repr__(self) -> str:
        return f"NestedTensor(tensors={tuple(self.tensors.shape)}, mask={None if self.mask is None else tuple(self.mask.shape)})"


def _padded_size(sizes: Sequence[Sequence[int]], size_divisibility: int) -> List[int]:
    max_size = [max(dim) for dim in zip(*sizes)]
    if size_divisibility > 1:
        max_size = [(s + size_divisibility - 1) // size_divisibility * size_divisibility for s in max_size]
    return max_size


def nested_tensor_from_tensor_list(tensors: Sequence[torch.Tensor], size_divisibility: int = 1) -> NestedTensor:
    """Images [3, H_i, W_i] -> NestedTensor [B, 3, H, W], zero padding at bottom/right."""
    h, w = _padded_size([t.shape[-2:] for t in tensors], size_divisibility)
    first = tensors[0]
    batch = first.new_zeros((len(tensors), first.shape[0], h, w))
    mask = torch.ones((len(tensors), h, w), dtype=torch.bool, device=first.device)
    for img, pad_img, m in zip(tensors, batch, mask):
        pad_img[:, : img.shape[1], : img.shape[2]].copy_(img)
        m[: img.shape[1], : img.shape[2]] = False
    return NestedTensor(batch, mask)


def nested_tensor_from_videos_list(videos: Sequence[torch.Tensor], size_divisibility: int = 1) -> NestedTensor:
    """Videos [T, 3, H_i, W_i] -> NestedTensor [B, T, 3, H, W] (mask [B, T, H, W]).

    Zero padding at bottom/right; ``H`` and ``W`` are rounded up to ``size_divisibility``.
    Videos of different length are padded in time too (the padded frames are masked).
    """
    t = max(v.shape[0] for v in videos)
    h, w = _padded_size([v.shape[-2:] for v in videos], size_divisibility)
    first = videos[0]
    batch = first.new_zeros((len(videos), t, first.shape[1], h, w))
    mask = torch.ones((len(videos), t, h, w), dtype=torch.bool, device=first.device)
    for vid, pad_vid, m in zip(videos, batch, mask):
        pad_vid[: vid.shape[0], :, : vid.shape[2], : vid.shape[3]].copy_(vid)
        m[: vid.shape[0], : vid.shape[2], : vid.shape[3]] = False
    return NestedTensor(batch, mask)


def inverse_sigmoid(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """logit(x) with x clamped to [0, 1] and both terms clamped below by ``eps``."""
    x = x.clamp(min=0, max=1)
    x1 = x.clamp(min=eps)
    x2 = (1 - x).clamp(min=eps)
    return torch.log(x1 / x2)


def interpolate_mask(mask: torch.Tensor, size) -> torch.Tensor:
    """Bool padding mask [N, H, W] -> [N, h, w] by nearest interpolation (as DETR's Joiner)."""
    return F.interpolate(mask[None].float(), size=size).to(torch.bool)[0]
