"""DsHmp's losses: Mask2Former's per-frame set loss, VITA's video set loss and similarity loss, and the
contrastive loss against a memory bank of expression embeddings.

- Frame level (``criterion``): per frame, Hungarian matching (scipy) of the queries to the objects visible in that
  frame on ``TRAIN_NUM_POINTS`` shared random points (cost 2 class + 5 BCE + 5 dice); cross-entropy with a 0.1
  no-object weight; point-sampled BCE / dice with importance sampling; every decoder output, the initial queries'
  included.
- Video level (``vita_criterion``): per (frame-decoder layer, video), matching over all frames jointly; the same
  three losses on every video-decoder layer; VITA's similarity loss between matched frame and video queries.
- Contrastive (``vita_criterion.train_memory_bank``): the anchor is the mean contrastive embedding of a video's
  matched queries from the LAST frame-decoder layer; the bank row of its expression is updated first
  (``0.1 old + 0.9 anchor``, all-gathered over processes), then the positives (expressions of the same video
  referring to the same objects, itself included) and negatives (the same video's other expressions first, then
  random others) give ``2 x`` a multi-positive cross-entropy of the dot products + the mean squared error between
  cosine similarities and labels. Its weight ramps up linearly over the first ``contrastive_warmup`` steps.

DSHMP QUIRK (batch 1, lifted): the original decouples only the first sentence of a batch, reads the contrastive
anchor from the hard-coded sequence index 2 (the last of 3 frame-decoder layers when the batch is 1) and uses the
first video's expression. Here every video of a batch has its own motion / static tokens and anchor, which gives
the original's numbers for batch 1.
"""
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import nn

from rvos.util.dist import all_gather_tensors, all_reduce_mean_count

from ..losses import dice_loss, pairwise_dice_coef, pairwise_sigmoid_ce, sigmoid_ce_loss
from .points import point_sample, uncertain_points, uniform_points

Indices = List[Tuple[torch.Tensor, torch.Tensor]]
# VITA's offset separating the object ids of different sequences in the similarity loss.
ID_MULTIPLIER = 1000
MEMORY_OLD_WEIGHT = 0.1
CONTRASTIVE_LOSS_SCALE = 2.0


def permutation(indices: Indices) -> Tuple[torch.Tensor, torch.Tensor]:
    """(batch index, query index) of every matched query."""
    batch = torch.cat([torch.full_like(src, i) for i, (src, _) in enumerate(indices)])
    return batch, torch.cat([src for src, _ in indices])


class PointMatcher(nn.Module):
    """Hungarian matching on shared random points: cost = class x (-p[target class]) + mask x BCE + dice x dice.

    ``forward(logits [N, Q, K+1], masks [N, Q, *S, h, w], targets)`` with per item ``labels`` [k] and ``masks``
    [k, *S, H, W] (S = frames for the video matcher, none for frames); one ``torch.rand(1, P, 2)`` per item.
    """

    def __init__(self, cost_class: float, cost_mask: float, cost_dice: float, num_points: int):
        super().__init__()
        self.cost_class, self.cost_mask, self.cost_dice = cost_class, cost_mask, cost_dice
        self.num_points = num_points

    @torch.no_grad()
    def forward(self, logits: torch.Tensor, masks: torch.Tensor, targets: Sequence[dict]) -> Indices:
        indices = []
        for b, target in enumerate(targets):
            prob = logits[b].softmax(-1)
            out = masks[b] if masks[b].dim() == 4 else masks[b][:, None]
            tgt = target["masks"].to(out)
            tgt = tgt if tgt.dim() == 4 else tgt[:, None]
            coords = uniform_points(1, self.num_points, out.device)
            tgt = point_sample(tgt, coords.repeat(tgt.shape[0], 1, 1)).flatten(1)
            out = point_sample(out, coords.repeat(out.shape[0], 1, 1)).flatten(1)
            with torch.autocast(out.device.type, enabled=False):
                out, tgt = out.float(), tgt.float()
                cost = (self.cost_mask * pairwise_sigmoid_ce(out, tgt) - self.cost_class * prob[:, target["labels"]]
                        + self.cost_dice * (1 - pairwise_dice_coef(out, tgt)))
            rows, cols = linear_sum_assignment(cost.reshape(prob.shape[0], -1).cpu())
            indices.append((torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64)))
        return indices


class PointMaskLoss(nn.Module):
    """Shared by both criteria: class cross-entropy (no-object weighted) and importance-sampled mask BCE / dice."""

    def __init__(self, num_classes: int, eos_coef: float, num_points: int, oversample_ratio: float,
                 importance_sample_ratio: float):
        super().__init__()
        self.num_classes = num_classes
        empty_weight = torch.ones(num_classes + 1)
        empty_weight[-1] = eos_coef
        self.register_buffer("empty_weight", empty_weight)
        self.num_points = num_points
        self.oversample_ratio = oversample_ratio
        self.importance_sample_ratio = importance_sample_ratio

    def class_loss(self, logits: torch.Tensor, targets: Sequence[dict], indices: Indices) -> torch.Tensor:
        """logits [N, Q, K+1]; unmatched queries are the no-object class."""
        classes = torch.full(logits.shape[:2], self.num_classes, dtype=torch.int64, device=logits.device)
        classes[permutation(indices)] = torch.cat([t["labels"][j] for t, (_, j) in zip(targets, indices)])
        return F.cross_entropy(logits.transpose(1, 2), classes, self.empty_weight.to(logits.dtype))

    def mask_losses(self, src: torch.Tensor, tgt: torch.Tensor, num_masks: float, groups: int
                    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """src / tgt: matched mask logits / targets [M, h, w] / [M, H, W], ``groups`` x (M / groups) rows summed per
        group (a video's frames form one row of the loss)."""
        src, tgt = src[:, None], tgt[:, None].to(src)
        with torch.no_grad():
            coords = uncertain_points(src, self.num_points, self.oversample_ratio, self.importance_sample_ratio)
            labels = point_sample(tgt, coords).squeeze(1)
        logits = point_sample(src, coords).squeeze(1)
        logits, labels = logits.reshape(groups, -1), labels.reshape(groups, -1)
        return sigmoid_ce_loss(logits, labels, num_masks), dice_loss(logits, labels, num_masks)


def normaliser(count: int, device) -> float:
    """The number of target masks averaged over processes, at least 1."""
    return max(all_reduce_mean_count(torch.tensor(float(count), device=device)), 1.0)


class FrameCriterion(PointMaskLoss):
    """Mask2Former's per-frame loss (``criterion``). Returns (losses, matcher results of the last
    ``last_layers`` decoder outputs, oldest first)."""

    def __init__(self, matcher: PointMatcher, last_layers: int, **kwargs):
        super().__init__(**kwargs)
        self.matcher = matcher
        self.last_layers = last_layers

    def layer(self, outputs: dict, targets: Sequence[dict], num_masks: float) -> Tuple[Dict, Indices]:
        indices = self.matcher(outputs["pred_logits"], outputs["pred_masks"], targets)
        src = outputs["pred_masks"][permutation(indices)]
        tgt = torch.cat([t["masks"][j] for t, (_, j) in zip(targets, indices)])
        mask, dice = self.mask_losses(src, tgt, num_masks, src.shape[0])
        return {"loss_ce": self.class_loss(outputs["pred_logits"], targets, indices), "loss_mask": mask,
                "loss_dice": dice}, indices

    def forward(self, outputs: dict, targets: Sequence[dict]) -> Tuple[Dict[str, torch.Tensor], List[Indices]]:
        num_masks = normaliser(sum(len(t["labels"]) for t in targets), outputs["pred_logits"].device)
        losses, final = self.layer(outputs, targets, num_masks)
        matched = []
        for i, aux in enumerate(outputs["aux_outputs"]):
            aux_losses, indices = self.layer(aux, targets, num_masks)
            losses.update({f"{k}_{i}": v for k, v in aux_losses.items()})
            matched.append(indices)
        return losses, (matched + [final])[-self.last_layers:]


class MemoryBank(nn.Module):
    """One embedding per training expression (``features`` [slots, C], random init), updated with momentum."""

    def __init__(self, num_features: int, num_slots: int, num_samples: int):
        super().__init__()
        self.register_buffer("features", torch.randn(num_slots, num_features))
        self.num_samples = num_samples

    @torch.no_grad()
    def update(self, ids: torch.Tensor, embeddings: torch.Tensor) -> None:
        """ids [B] and embeddings [B, C] of every process (all-gathered) -> 0.1 old + 0.9 new."""
        ids, embeddings = all_gather_tensors(ids), all_gather_tensors(embeddings)
        if int(ids.max()) >= self.features.shape[0]:
            raise ValueError(f"expression index {int(ids.max())} is beyond the {self.features.shape[0]} slots of the "
                             f"contrastive memory bank; pass --dshmp_memory_slots with at least the number of "
                             f"training expressions")
        self.features[ids] = MEMORY_OLD_WEIGHT * self.features[ids] + (1 - MEMORY_OLD_WEIGHT) * embeddings.to(
            self.features)

    def samples(self, positives: Sequence[int], distractors: Sequence[int], population: int
                ) -> Tuple[torch.Tensor, torch.Tensor]:
        """(positive rows, negative rows): the distractors first fill the ``num_samples - len(positives)`` negative
        places (when there are more, the first ones), the rest drawn with ``np.random.choice`` among the other
        expressions of ``range(population)`` (the original's order: random draws, then distractors)."""
        if population > self.features.shape[0]:
            raise ValueError(f"the training set has {population} expressions but the contrastive memory bank "
                             f"{self.features.shape[0]} rows; pass --dshmp_memory_slots {population} (or more)")
        positives, distractors = list(positives), list(distractors)
        excluded = set(positives) | set(distractors)
        others = [i for i in range(population) if i not in excluded]
        size = max(self.num_samples - len(positives), 0)
        if size - len(distractors) < 0:
            negatives = distractors[:size]
        else:
            negatives = np.random.choice(others, size=size - len(distractors), replace=False).tolist() + distractors
        return self.features[positives].clone(), self.features[negatives].clone()


def multi_positive_loss(dot: torch.Tensor, cosine: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """2 x multi-positive cross-entropy of ``dot`` [1, N] (positives normalised to one share) + mean squared error
    of ``cosine`` [1, N] against the labels [1, N] (1 = positive)."""
    logits = dot - dot.max(dim=1, keepdim=True)[0].detach()
    exp = logits.exp()
    exp = exp * labels / labels.sum(1, keepdim=True) + exp * torch.logical_not(labels)
    log_prob = logits - exp.sum(1, keepdim=True).log()
    cross_entropy = -(labels * log_prob).sum(1) / labels.sum(1)
    return CONTRASTIVE_LOSS_SCALE * cross_entropy.mean() + ((cosine - labels) ** 2).mean()


class VideoCriterion(PointMaskLoss):
    """VITA's video-level losses with DsHmp's contrastive loss (``vita_criterion``)."""

    def __init__(self, matcher: PointMatcher, memory: MemoryBank, **kwargs):
        super().__init__(**kwargs)
        self.matcher = matcher
        self.train_memory_bank = memory

    def layer(self, outputs: dict, clips: Sequence[dict], num_masks: float) -> Tuple[Dict, Indices]:
        logits = outputs["pred_logits"].flatten(0, 1)  # [K*B, cQ, 2], layer-major
        masks = outputs["pred_masks"].flatten(0, 1)  # [K*B, cQ, T, h, w]
        targets = list(clips) * (logits.shape[0] // len(clips))
        indices = self.matcher(logits, masks, targets)
        src = masks[permutation(indices)]  # [M, T, h, w]
        tgt = torch.cat([t["masks"][j] for t, (_, j) in zip(targets, indices)])
        mask, dice = self.mask_losses(src.flatten(0, 1), tgt.flatten(0, 1), num_masks, src.shape[0])
        return {"loss_vita_ce": self.class_loss(logits, targets, indices), "loss_vita_mask": mask,
                "loss_vita_dice": dice}, indices

    def similarity_loss(self, outputs: dict, clips: Sequence[dict], frames: Sequence[dict], clip_indices: Indices,
                        frame_indices: List[Indices]) -> torch.Tensor:
        """VITA: BCE between dot products of matched frame / video query embeddings and "same object", per sequence."""
        fq = outputs["pred_fq_embed"]  # [K, B, T, fQ, C]
        layers, batch, t = fq.shape[:3]
        flat_indices = [ind for per_layer in frame_indices for ind in per_layer]
        frame_src = permutation(flat_indices)
        frame_ids = torch.cat([f["ids"][j] for f, (_, j) in zip(list(frames) * layers, flat_indices)])
        frame_seq = torch.div(frame_src[0].to(fq.device), t, rounding_mode="floor")
        clip_src = permutation(clip_indices)
        clip_ids = torch.cat([c["ids"][j] for c, (_, j) in zip(list(clips) * layers, clip_indices)]).amax(dim=1)
        clip_seq = clip_src[0].to(fq.device)
        embeds = torch.cat([fq.flatten(0, 2)[frame_src], outputs["pred_cq_embed"].flatten(0, 1)[clip_src]])
        ids = torch.cat([frame_ids + frame_seq * ID_MULTIPLIER, clip_ids + clip_seq * ID_MULTIPLIER])
        seq = torch.cat([frame_seq, clip_seq])
        valid = torch.cat([frame_ids, clip_ids]) != -1
        embeds, ids, seq = embeds[valid], ids[valid], seq[valid]
        target = (ids[:, None] == ids[None]).float()
        same = (seq[:, None] == seq[None]).float()
        loss = F.binary_cross_entropy_with_logits(embeds @ embeds.T, target, reduction="none") * same
        return loss.sum() / (same.sum() + 1e-6)

    def contrastive_loss(self, outputs: dict, clips: Sequence[dict], indices: Indices) -> torch.Tensor:
        embeds = outputs["pred_contrastive_embed"]  # [K, B, cQ, C]
        layers, batch = embeds.shape[:2]
        last = (layers - 1) * batch
        anchors = torch.stack([embeds[-1, b][indices[last + b][0]].mean(0) for b in range(batch)])
        ids = torch.tensor([int(c["refer_id"]) for c in clips], device=embeds.device)
        self.train_memory_bank.update(ids, anchors)
        losses = []
        for anchor, clip in zip(anchors, clips):
            positive, negative = self.train_memory_bank.samples(clip["positives"], clip["negatives"],
                                                                clip["num_expressions"])
            rows = torch.cat([positive, negative]).to(anchor)
            labels = torch.zeros((1, rows.shape[0]), dtype=torch.int64, device=anchor.device)
            labels[0, :positive.shape[0]] = 1
            cosine = F.normalize(anchor[None], dim=1) @ F.normalize(rows, dim=1).T
            losses.append(multi_positive_loss(anchor[None] @ rows.T, cosine, labels))
        return torch.stack(losses).mean()

    def forward(self, outputs: dict, clips: Sequence[dict], frames: Sequence[dict], frame_indices: List[Indices]
                ) -> Dict[str, torch.Tensor]:
        layers = outputs["pred_logits"].shape[0]
        num_masks = normaliser(sum(len(c["labels"]) for c in clips) * layers, outputs["pred_logits"].device)
        losses, indices = self.layer(outputs, clips, num_masks)
        losses["loss_vita_sim"] = self.similarity_loss(outputs, clips, frames, indices, frame_indices)
        losses["loss_con_sim"] = self.contrastive_loss(outputs, clips, indices)
        for i, aux in enumerate(outputs["aux_outputs"]):
            aux_losses, _ = self.layer(aux, clips, num_masks)
            losses.update({f"{k}_{i}": v for k, v in aux_losses.items()})
        return losses
