"""PointRend's point sampling, as Mask2Former's losses and matchers use it (written here: detectron2 is not a
dependency). Coordinates are in [0, 1] x [0, 1] (x, y); ``grid_sample`` is bilinear, zero padding,
align_corners False. Random coordinates come from ``torch.rand`` in the original's call order, so a seeded run
draws the original's points.
"""
from typing import Callable

import torch
import torch.nn.functional as F


def point_sample(maps: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """maps [N, C, H, W], coords [N, P, 2] -> values [N, C, P]."""
    return F.grid_sample(maps, 2.0 * coords.unsqueeze(2) - 1.0, align_corners=False).squeeze(3)


def uniform_points(count: int, num_points: int, device) -> torch.Tensor:
    """[count, num_points, 2] uniform random coordinates."""
    return torch.rand(count, num_points, 2, device=device)


def uncertainty(logits: torch.Tensor) -> torch.Tensor:
    """Mask2Former's point uncertainty: -|logit| (highest at the decision boundary)."""
    return -logits.abs()


def uncertain_points(logits: torch.Tensor, num_points: int, oversample_ratio: float, importance_sample_ratio: float,
                     score: Callable[[torch.Tensor], torch.Tensor] = uncertainty) -> torch.Tensor:
    """Importance sampling of ``num_points`` coordinates per mask of logits [N, 1, H, W]: the most uncertain of
    ``num_points * oversample_ratio`` random points (a share ``importance_sample_ratio``), the rest uniform."""
    n = logits.shape[0]
    num_sampled = int(num_points * oversample_ratio)
    coords = uniform_points(n, num_sampled, logits.device)
    scores = score(point_sample(logits, coords))
    num_uncertain = int(importance_sample_ratio * num_points)
    num_random = num_points - num_uncertain
    index = torch.topk(scores[:, 0, :], k=num_uncertain, dim=1)[1]
    index = index + num_sampled * torch.arange(n, dtype=torch.long, device=logits.device)[:, None]
    coords = coords.view(-1, 2)[index.view(-1), :].view(n, num_uncertain, 2)
    if num_random > 0:
        coords = torch.cat([coords, uniform_points(n, num_random, logits.device)], dim=1)
    return coords
