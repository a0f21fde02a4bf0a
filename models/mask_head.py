"""Dynamic mask head: per-query 1x1 conv kernels (from the controller) applied to mask features.

The controller MLP itself lives on the model (``controller.*`` keys); this module knows how
many parameters it must produce and how to run them.
"""
from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
from einops import repeat


class DynamicMaskHead:
    """Parameter layout and execution of a ``num_layers``-deep dynamic 1x1 conv chain.

    Layer 0 maps ``in_channels`` (+2 relative-coordinate channels when ``rel_coord``) to
    ``channels``, middle layers ``channels -> channels``, the last ``channels -> out_channels``.
    """

    def __init__(self, in_channels: int, channels: int, num_layers: int, rel_coord: bool = True,
                 out_channels: int = 1):
        self.in_channels = in_channels
        self.channels = channels
        self.num_layers = num_layers
        self.rel_coord = rel_coord
        self.out_channels = out_channels
        self.weight_nums: List[int] = []
        self.bias_nums: List[int] = []
        for layer in range(num_layers):
            c_in = (in_channels + 2 if rel_coord else in_channels) if layer == 0 else channels
            c_out = out_channels if layer == num_layers - 1 else channels
            self.weight_nums.append(c_in * c_out)
            self.bias_nums.append(c_out)

    @property
    def num_params(self) -> int:
        return sum(self.weight_nums) + sum(self.bias_nums)

    def split_params(self, params: torch.Tensor) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
        """[K, num_params] -> per-layer grouped conv weights [K*c_out, c_in, 1, 1] and biases [K*c_out]."""
        k = params.shape[0]
        chunks = torch.split_with_sizes(params, self.weight_nums + self.bias_nums, dim=1)
        weights, biases = [], []
        for layer in range(self.num_layers):
            c_out = self.out_channels if layer == self.num_layers - 1 else self.channels
            weights.append(chunks[layer].reshape(k * c_out, -1, 1, 1))
            biases.append(chunks[self.num_layers + layer].reshape(k * c_out))
        return weights, biases

    def run(self, features: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """features [K, C_in, H, W] (one map per kernel set), params [K, num_params] -> [K, out, H, W]."""
        k, _, h, w = features.shape
        weights, biases = self.split_params(params)
        x = features.reshape(1, -1, h, w)
        for layer, (weight, bias) in enumerate(zip(weights, biases)):
            x = F.conv2d(x, weight, bias=bias, groups=k)
            if layer < self.num_layers - 1:
                x = F.relu(x)
        return x.reshape(k, -1, h, w)


def feature_locations(h: int, w: int, stride: int, device) -> torch.Tensor:
    """Pixel coordinates (x, y) of the centres of an [h, w] grid of stride ``stride`` -> [h*w, 2]."""
    xs = torch.arange(0, w * stride, step=stride, dtype=torch.float32, device=device)
    ys = torch.arange(0, h * stride, step=stride, dtype=torch.float32, device=device)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack((grid_x.reshape(-1), grid_y.reshape(-1)), dim=1) + stride // 2


def dynamic_masks(head: DynamicMaskHead, mask_features: torch.Tensor, params: torch.Tensor,
                  reference_points: torch.Tensor, image_sizes: torch.Tensor, stride: int) -> torch.Tensor:
    """Masks of every query in every frame.

    Args:
        mask_features: [B, T, C, H, W] (stride ``stride`` of the padded input).
        params: controller output [B, T, Q, num_params].
        reference_points: [B, T, Q, 2] normalised (x, y) of each query.
        image_sizes: [B, 2] unpadded (h, w) of the input; relative coordinates are in its pixels.
    Returns:
        mask logits [B, T, Q, H, W]; [B, T, Q, C_out, H, W] when the head has ``out_channels`` C_out > 1
        (SgMg's patch kernels).
    """
    b, t, c, h, w = mask_features.shape
    q = params.shape[2]
    if head.rel_coord:
        scale = image_sizes.flip(-1).to(reference_points)  # (w, h)
        points = reference_points * scale[:, None, None, :]
        locations = feature_locations(h, w, stride, mask_features.device)
        rel = points.reshape(b, t, q, 1, 1, 2) - locations.reshape(1, 1, 1, h, w, 2)
        rel = rel.permute(0, 1, 2, 5, 3, 4)
        features = torch.cat([repeat(mask_features, "b t c h w -> b t q c h w", q=q), rel.to(mask_features)], dim=3)
    else:
        features = repeat(mask_features, "b t c h w -> b t q c h w", q=q)
    logits = head.run(features.flatten(0, 2), params.flatten(0, 2))
    logits = logits.reshape(b, t, q, head.out_channels, h, w)
    return logits[:, :, :, 0] if head.out_channels == 1 else logits
