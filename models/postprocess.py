"""Post-processors turning raw outputs into evaluation inputs (A2D/JHMDB masks, RefCOCO boxes/masks)."""
from typing import Dict, List

import numpy as np
import pycocotools.mask as mask_util
import torch
import torch.nn.functional as F
from torch import nn

from rvos.util import box_ops


def _encode_rle(mask: torch.Tensor) -> dict:
    """[H, W] binary mask -> COCO RLE with str counts."""
    rle = mask_util.encode(np.asfortranarray(mask.cpu().numpy().astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def _unpad_and_resize(masks: torch.Tensor, input_size, orig_size) -> torch.Tensor:
    """masks [Q, H_pad, W_pad] (bool) -> crop the padding to ``input_size`` -> nearest-resize to ``orig_size``
    -> [Q, 1, H_orig, W_orig] float."""
    h, w = int(input_size[0]), int(input_size[1])
    cropped = masks[:, :h, :w].unsqueeze(1).float()
    return F.interpolate(cropped, size=tuple(int(s) for s in orig_size), mode="nearest")


class A2DSentencesPostProcess(nn.Module):
    """A2D / JHMDB: the single annotated frame, every query's mask at the original size with its score."""

    def __init__(self, threshold: float = 0.5):
        super().__init__()
        self.threshold = threshold

    @torch.no_grad()
    def forward(self, outputs: dict, orig_target_sizes, max_target_sizes) -> List[dict]:
        scores = outputs["pred_logits"][:, 0, :, 0].sigmoid()
        masks = outputs["pred_masks"][:, 0]
        h, w = masks.shape[-2:]
        masks = F.interpolate(masks, size=(h * 4, w * 4), mode="bilinear", align_corners=False)
        masks = masks.sigmoid() > self.threshold
        results = []
        for s, m, input_size, orig_size in zip(scores, masks, max_target_sizes, orig_target_sizes):
            resized = _unpad_and_resize(m, input_size, orig_size)
            results.append({"scores": s, "masks": resized,
                            "rle_masks": [_encode_rle(r[0]) for r in resized]})
        return results


class PostProcess(nn.Module):
    """RefCOCO boxes: queries ranked by score, boxes in absolute xyxy of ``target_sizes``."""

    @torch.no_grad()
    def forward(self, outputs: dict, target_sizes: torch.Tensor) -> List[dict]:
        logits = outputs["pred_logits"].flatten(1, 2)
        boxes = outputs["pred_boxes"].flatten(1, 2)
        num_queries = logits.shape[1]
        prob = logits.sigmoid()
        scores, flat = torch.topk(prob.view(logits.shape[0], -1), k=num_queries, dim=1, sorted=True)
        query = flat // logits.shape[2]
        boxes = torch.gather(box_ops.box_cxcywh_to_xyxy(boxes), 1, query.unsqueeze(-1).repeat(1, 1, 4))
        img_h, img_w = target_sizes.unbind(1)
        boxes = boxes * torch.stack([img_w, img_h, img_w, img_h], dim=1)[:, None, :]
        return [{"scores": s, "labels": torch.ones_like(q), "boxes": b, "query": q}
                for s, q, b in zip(scores, query, boxes)]


class PostProcessSegm(nn.Module):
    """RefCOCO masks for the ranked queries of :class:`PostProcess` (added to its results in place)."""

    def __init__(self, threshold: float = 0.5):
        super().__init__()
        self.threshold = threshold

    @torch.no_grad()
    def forward(self, results: List[dict], outputs: dict, orig_target_sizes, max_target_sizes) -> List[dict]:
        masks = outputs["pred_masks"].flatten(1, 2)
        h, w = masks.shape[-2:]
        for i, result in enumerate(results):
            m = masks[i][result["query"]].unsqueeze(0)
            m = F.interpolate(m, size=(h * 4, w * 4), mode="bilinear", align_corners=False)
            m = (m.sigmoid() > self.threshold).cpu()[0]
            result["masks"] = _unpad_and_resize(m, max_target_sizes[i], orig_target_sizes[i]).byte()
        return results


def build_postprocessors(args, dataset_name: str):
    if dataset_name in ("a2d", "jhmdb"):
        return A2DSentencesPostProcess(threshold=args.threshold)
    processors: Dict[str, nn.Module] = {"bbox": PostProcess()}
    if args.masks:
        processors["segm"] = PostProcessSegm(threshold=args.threshold)
    return processors
