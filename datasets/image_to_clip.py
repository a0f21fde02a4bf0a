"""Pseudo-video frames from one still image (RefCOCO joint training, DATASETS.md §6.3).

Each extra frame is the image after a random colour change (a non-empty random subset of: brightness
±40, hue and saturation ±5) and a random geometric warp shared with its mask (perspective jitter of
scale 0.08, rotation ±20°, translation ±10 %), then, with probability 0.25, motion blur with a 9 or 11
pixel kernel. This reimplements the original imgaug ``ImageToSeqAugmenter`` with OpenCV (imgaug is
unmaintained and breaks on numpy 2); the parameterisation follows imgaug's, the exact pixels do not.
Randomness comes from Python's ``random``.
"""
import random
from typing import Sequence, Tuple

import cv2
import numpy as np


class ImageToClipAugmenter:
    """``(image [H, W, 3] uint8 RGB, mask [H, W] bool) -> (image, mask)`` of one synthetic frame."""

    def __init__(self, perspective_scale: float = 0.08, rotation: float = 20.0, translate: float = 0.1,
                 brightness: int = 40, hue_saturation: int = 5, motion_blur_prob: float = 0.25,
                 motion_blur_kernels: Sequence[int] = (9, 11)):
        self.perspective_scale = perspective_scale
        self.rotation = rotation
        self.translate = translate
        self.brightness = brightness
        self.hue_saturation = hue_saturation
        self.motion_blur_prob = motion_blur_prob
        self.motion_blur_kernels = tuple(motion_blur_kernels)

    def __call__(self, image: np.ndarray, mask: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        image = self._colour(image)
        height, width = mask.shape
        warp = self._affine(width, height) @ self._perspective(width, height)
        image = cv2.warpPerspective(image, warp, (width, height), flags=cv2.INTER_LINEAR,
                                    borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        mask = cv2.warpPerspective(mask.astype(np.uint8), warp, (width, height), flags=cv2.INTER_NEAREST,
                                   borderMode=cv2.BORDER_CONSTANT, borderValue=0) > 0
        if random.random() < self.motion_blur_prob:
            image = self._motion_blur(image)
        return image, mask

    def _colour(self, image: np.ndarray) -> np.ndarray:
        changes = [self._add_brightness, self._add_hue_saturation]
        chosen = sorted(random.sample(range(len(changes)), random.randint(1, len(changes))))
        for i in chosen:
            image = changes[i](image)
        return image

    def _add_brightness(self, image: np.ndarray) -> np.ndarray:
        delta = random.randint(-self.brightness, self.brightness)
        return np.clip(image.astype(np.int16) + delta, 0, 255).astype(np.uint8)

    def _add_hue_saturation(self, image: np.ndarray) -> np.ndarray:
        delta = random.randint(-self.hue_saturation, self.hue_saturation)
        if delta == 0:
            return image
        hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV).astype(np.int16)
        hsv[:, :, 0] = np.mod(hsv[:, :, 0] + delta, 180)
        hsv[:, :, 1] = np.clip(hsv[:, :, 1] + delta, 0, 255)
        return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)

    def _perspective(self, width: int, height: int) -> np.ndarray:
        """3x3 map from a quadrilateral with corners jittered inward by |N(0, scale)| onto the full frame."""
        corners = np.array([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]], dtype=np.float32)
        inward = np.array([[1, 1], [-1, 1], [-1, -1], [1, -1]], dtype=np.float32)
        jitter = np.array([[abs(random.gauss(0.0, self.perspective_scale)) for _ in range(2)] for _ in range(4)],
                          dtype=np.float32)
        source = corners + inward * jitter * np.array([width, height], dtype=np.float32)
        return cv2.getPerspectiveTransform(source.astype(np.float32), corners)

    def _affine(self, width: int, height: int) -> np.ndarray:
        """3x3 rotation about the centre followed by a translation."""
        angle = random.uniform(-self.rotation, self.rotation)
        shift_x = random.uniform(-self.translate, self.translate) * width
        shift_y = random.uniform(-self.translate, self.translate) * height
        matrix = np.eye(3)
        matrix[:2] = cv2.getRotationMatrix2D((width / 2.0, height / 2.0), angle, 1.0)
        matrix[0, 2] += shift_x
        matrix[1, 2] += shift_y
        return matrix

    def _motion_blur(self, image: np.ndarray) -> np.ndarray:
        size = random.choice(self.motion_blur_kernels)
        angle = np.deg2rad(random.uniform(0.0, 360.0))
        kernel = np.zeros((size, size), dtype=np.float32)
        centre, reach = size // 2, size // 2
        end = (int(round(centre + reach * np.cos(angle))), int(round(centre + reach * np.sin(angle))))
        start = (int(round(centre - reach * np.cos(angle))), int(round(centre - reach * np.sin(angle))))
        cv2.line(kernel, start, end, 1.0, thickness=1)
        kernel /= kernel.sum()
        return cv2.filter2D(image, -1, kernel)
