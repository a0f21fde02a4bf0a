"""Dense optical-flow propagation (OpenCV DIS or Farneback): the mask warped frame to frame, no weights needed.

For each step from frame a (mask known) to frame b, the flow is computed from b to a (the backward flow:
``b(x) ~ a(x + flow(x))``), and the mask of b is ``mask_a(x + flow(x))`` sampled bilinearly with ``cv2.remap``
(outside the frame: 0). Probabilities are warped as they are, so they soften where the flow is uncertain.
"""
from typing import Callable, Optional

import cv2
import numpy as np

from rvos.ensemble.propagate.base import Propagator

DIS_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}
METHODS = ("dis", "farneback")


def _dis_flow(preset: str, finest_scale: int) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    dis = cv2.DISOpticalFlow_create(DIS_PRESETS[preset])
    dis.setFinestScale(finest_scale)

    def flow(source: np.ndarray, target: np.ndarray) -> np.ndarray:
        return dis.calc(source, target, None)

    return flow


def _farneback_flow(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    return cv2.calcOpticalFlowFarneback(source, target, None, pyr_scale=0.5, levels=4, winsize=15, iterations=3,
                                        poly_n=5, poly_sigma=1.2, flags=0)


def warp(mask: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """mask float32 [H, W] sampled at x + flow(x) (flow float32 [H, W, 2], (dx, dy)); outside the frame: 0."""
    height, width = mask.shape
    grid_x, grid_y = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    return cv2.remap(mask, grid_x + flow[..., 0], grid_y + flow[..., 1], interpolation=cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)


class OpticalFlowPropagator(Propagator):
    """Spec ``{"type": "optical_flow", "method": "dis" | "farneback", "dis_preset": "ultrafast" | "fast" |
    "medium", "dis_finest_scale": int >= 0}`` (the DIS options apply to DIS only).

    Defaults: DIS, preset ultrafast, finest scale 0 (flow at full resolution). The presets' own finest scales
    (1 or 2: flow at half / quarter resolution) and the smoother fast / medium presets blur the flow across the
    object's boundary, and a mask warped step after step then drifts by pixels (docs/PROPAGATION.md has the
    measurements).
    """

    name = "optical_flow"
    supports_tta = True

    def __init__(self, method: str = "dis", dis_preset: str = "ultrafast", dis_finest_scale: int = 0):
        if method not in METHODS:
            raise ValueError(f"optical_flow: unknown method {method!r}; accepted: {', '.join(METHODS)}")
        if dis_preset not in DIS_PRESETS:
            raise ValueError(f"optical_flow: unknown dis_preset {dis_preset!r}; accepted: {', '.join(DIS_PRESETS)}")
        if isinstance(dis_finest_scale, bool) or not isinstance(dis_finest_scale, int) or dis_finest_scale < 0:
            raise ValueError(f"optical_flow: dis_finest_scale must be an int >= 0, got {dis_finest_scale!r}")
        self.method = method
        self.dis_preset = dis_preset
        self.dis_finest_scale = dis_finest_scale

    def _flow_function(self) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
        return _dis_flow(self.dis_preset, self.dis_finest_scale) if self.method == "dis" else _farneback_flow

    def _propagate(self, frames: np.ndarray, key_index: int, key_mask: np.ndarray, text: Optional[str]) -> np.ndarray:
        gray = [cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) for frame in frames]
        flow = self._flow_function()
        out = np.zeros(frames.shape[:3], dtype=np.float32)
        out[key_index] = key_mask
        for targets in (range(key_index + 1, len(frames)), range(key_index - 1, -1, -1)):
            previous = key_index
            for target in targets:
                out[target] = warp(out[previous], flow(gray[target], gray[previous]))
                previous = target
        return out
