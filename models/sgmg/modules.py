"""SgMg's building blocks: the spectrum filter of its cross-modal fusion, the multi-granularity
segmentation optimizer and the text-encoder wrapper that gives the public checkpoints' key names.

Attribute names are those of the public SgMg checkpoints (``input_fft.{l}.conv1`` ..., ``mask_refine.conv1_1div8``
..., ``text_encoder.text_backbone.*``).
"""
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn


def centred_gaussian(height: int, width: int, sigma: float, device=None) -> torch.Tensor:
    """exp(-((i - h//2)^2 + (j - w//2)^2) / (2 sigma^2)) on an [h, w] grid -> [1, 1, h, w] float32.

    On the unshifted FFT spectrum the centre (h//2, w//2) holds the highest frequencies."""
    ys = torch.arange(height, dtype=torch.float32, device=device)[:, None]
    xs = torch.arange(width, dtype=torch.float32, device=device)[None, :]
    gauss = torch.exp(-((ys - height // 2) ** 2 + (xs - width // 2) ** 2) / (2 * sigma ** 2))
    return gauss[None, None]


class SpectrumFilter(nn.Module):
    """SgMg's ``LFMResizeAdaptive``: an adaptive low-pass residual in the frequency domain.

    A gate g in (0, 1) per image (3x3 conv without padding, global average pool, FC-ReLU-FC-sigmoid)
    damps the spectrum by (1 - g * G) with G a centred Gaussian of the unshifted FFT (the highest
    frequencies); real and imaginary parts then pass a 1x1 conv - ReLU - 1x1 conv, and the real part of
    the inverse FFT is added to the input. Inputs need H, W >= 3 (the unpadded 3x3 conv).
    """

    def __init__(self, channels: int, sigma: float = 7.0):
        super().__init__()
        self.sigma = sigma
        self.conv1 = nn.Conv2d(2 * channels, 2 * channels, kernel_size=1)
        self.conv2 = nn.Conv2d(2 * channels, 2 * channels, kernel_size=1)
        self.laplace = nn.Conv2d(channels, channels, kernel_size=3, padding=0)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(nn.Linear(channels, channels, bias=False), nn.ReLU(inplace=True),
                                nn.Linear(channels, 1, bias=False), nn.Sigmoid())

    def gaussian(self, height: int, width: int, previous: Optional[torch.Tensor], device) -> torch.Tensor:
        """The filter [1, 1, H, W]: a fresh Gaussian, or the ``previous`` block's filter resized (bilinear)."""
        if previous is None:
            return centred_gaussian(height, width, self.sigma, device)
        return F.interpolate(previous, size=(height, width), mode="bilinear", align_corners=False)

    def forward(self, x: torch.Tensor, previous: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """x [N, C, H, W]; previous: the filter of the block before in the chain (None for the first).
        Returns (filtered x [N, C, H, W] float32, this block's filter [1, 1, H, W])."""
        n, c, h, w = x.shape
        if h < 3 or w < 3:
            raise ValueError(f"SgMg's spectrum filter needs feature maps of at least 3x3 (its unpadded 3x3 conv); "
                             f"got {h}x{w}: the input frames are too small for this level")
        x = x.float()
        gate = self.fc(self.pool(self.laplace(x)).view(n, c)).view(n, 1, 1, 1)
        gauss = self.gaussian(h, w, previous, x.device)
        spectrum = torch.fft.fft2(x) * (1 - gate * gauss)
        y = self.conv2(F.relu(self.conv1(torch.cat([spectrum.real, spectrum.imag], dim=1)))).float()
        real, imag = torch.chunk(y, 2, dim=1)
        y = torch.fft.ifft2(torch.complex(real, imag), s=(h, w)).real
        return x + y, gauss


class MultiGranularityOptimizer(nn.Module):
    """SgMg's MSO: refines a query's 16-channel stride-8 patch mask with the stride-8 and stride-4 backbone
    features (each step: concat, ReLU, conv3x3, ReLU, conv3x3, added residually; bilinear x2 in between).

    ``channels``: patch-mask channels (16); ``feature_channels``: backbone channels at strides 4 and 8.
    """

    def __init__(self, channels: int, feature_channels: Sequence[int]):
        super().__init__()
        self.conv1_1div8 = nn.Conv2d(channels + feature_channels[1], channels, kernel_size=3, padding=1)
        self.conv2_1div8 = nn.Conv2d(channels, channels, kernel_size=3, padding=1)
        self.conv1_1div4 = nn.Conv2d(channels + feature_channels[0], channels, kernel_size=3, padding=1)
        self.conv2_1div4 = nn.Conv2d(channels, channels, kernel_size=3, padding=1)

    @staticmethod
    def _refine(masks: torch.Tensor, features: torch.Tensor, conv1: nn.Conv2d, conv2: nn.Conv2d) -> torch.Tensor:
        if masks.shape[-2:] != features.shape[-2:]:
            raise ValueError(f"MSO: patch masks {tuple(masks.shape[-2:])} and backbone features "
                             f"{tuple(features.shape[-2:])} differ in size")
        return masks + conv2(F.relu(conv1(F.relu(torch.cat([masks, features], dim=1)))))

    def forward(self, masks: torch.Tensor, features_4x: torch.Tensor, features_8x: torch.Tensor) -> torch.Tensor:
        """masks [N, C, H/8, W/8]; features_4x [N, C4, H/4, W/4]; features_8x [N, C8, H/8, W/8] (N = frames)
        -> refined patch masks [N, C, H/4, W/4]."""
        masks = self._refine(masks, features_8x, self.conv1_1div8, self.conv2_1div8)
        masks = F.interpolate(masks, size=features_4x.shape[-2:], mode="bilinear", align_corners=False)
        return self._refine(masks, features_4x, self.conv1_1div4, self.conv2_1div4)


class SgMgTextEncoder(nn.Module):
    """SgMg's ``TextEncoder``: RoBERTa held as ``text_backbone`` (checkpoint keys ``text_encoder.text_backbone.*``).

    Called like the RoBERTa model itself. ``load_state_dict`` also takes a plain RoBERTa state dict (a
    pretrained ``--text_encoder`` weights file, as ``models.build.load_text_encoder_weights`` passes it).
    """

    def __init__(self, text_backbone: nn.Module):
        super().__init__()
        self.text_backbone = text_backbone

    @property
    def config(self):
        return self.text_backbone.config

    def forward(self, **tokenized):
        return self.text_backbone(**tokenized)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        if state_dict and not any(key.startswith("text_backbone.") for key in state_dict):
            return self.text_backbone.load_state_dict(state_dict, strict=strict, assign=assign)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)
