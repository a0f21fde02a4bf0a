"""The synthetic world: short videos of moving 2-D shapes on a textured, noisy background.

A :class:`Video` holds a list of :class:`SceneObject` (shape, colour, size, straight-line motion,
depth) and renders, deterministically from its own seed, the RGB frames, the per-object *amodal*
masks (the whole shape, clipped to the frame) and the per-object *visible* masks (what is left
after nearer shapes are drawn over it). Nothing here knows about any benchmark's file layout.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import cv2
import numpy as np

SHAPES = ("circle", "square", "triangle", "diamond", "star")
SHAPE_PLURALS = {shape: shape + "s" for shape in SHAPES}
COLOURS = {
    "red": (215, 35, 35),
    "green": (35, 170, 60),
    "blue": (40, 75, 225),
    "yellow": (240, 215, 35),
    "purple": (145, 55, 195),
    "orange": (250, 135, 25),
    "cyan": (35, 205, 215),
}
SIZE_FRACTIONS = {"small": 0.08, "big": 0.15}
DIRECTION_VECTORS = {
    "left": (-1.0, 0.0), "right": (1.0, 0.0), "up": (0.0, -1.0), "down": (0.0, 1.0), "still": (0.0, 0.0),
}
OPPOSITE_DIRECTION = {"left": "right", "right": "left", "up": "down", "down": "up", "still": "still"}

BACKGROUND_NOISE_STD = 5.0
NOISE_BANK_SIZE = 3
POLYGON_SHIFT_BITS = 4


@dataclass(frozen=True)
class Look:
    """What a shape looks like in a single frame."""

    shape: str
    colour: str
    size: str

    def __post_init__(self):
        if self.shape not in SHAPES or self.colour not in COLOURS or self.size not in SIZE_FRACTIONS:
            raise ValueError(f"unknown look {self}")


@dataclass(frozen=True)
class SceneObject:
    """One shape moving on a straight line at constant speed.

    ``obj_id`` is the object's id inside its video (1-based, as in YouTube-VOS / DAVIS palette
    PNGs); ``depth`` orders drawing (larger = nearer the camera); ``start`` is the centre (x, y)
    in pixels at frame 0 and ``speed`` is in pixels per frame along ``direction``.
    """

    obj_id: int
    look: Look
    radius: float
    start: tuple[float, float]
    direction: str
    speed: float
    depth: int

    def __post_init__(self):
        if self.direction not in DIRECTION_VECTORS:
            raise ValueError(f"unknown direction {self.direction!r}")

    @property
    def shape(self) -> str:
        return self.look.shape

    @property
    def colour(self) -> str:
        return self.look.colour

    @property
    def size(self) -> str:
        return self.look.size

    def centre(self, t: int) -> tuple[float, float]:
        """Centre (x, y) at frame index ``t``."""
        dx, dy = DIRECTION_VECTORS[self.direction]
        return self.start[0] + dx * self.speed * t, self.start[1] + dy * self.speed * t

    def describe(self) -> dict:
        """JSON-ready summary of the object (for the sidecar file)."""
        return {
            "shape": self.shape,
            "colour": self.colour,
            "size": self.size,
            "direction": self.direction,
            "speed": round(float(self.speed), 4),
            "radius": round(float(self.radius), 4),
            "start": [round(float(self.start[0]), 4), round(float(self.start[1]), 4)],
            "depth": self.depth,
        }


def radius_for(size: str, height: int, width: int) -> float:
    """Radius in pixels of a shape of the named size in a frame of the given size."""
    return SIZE_FRACTIONS[size] * min(height, width)


def _polygon(shape: str, cx: float, cy: float, r: float) -> np.ndarray:
    if shape == "square":
        half = 0.85 * r
        points = [(-half, -half), (half, -half), (half, half), (-half, half)]
    elif shape == "triangle":
        outer = 1.15 * r
        points = [(outer * math.cos(a), outer * math.sin(a)) for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)]
    elif shape == "diamond":
        points = [(0.0, -1.15 * r), (0.9 * r, 0.0), (0.0, 1.15 * r), (-0.9 * r, 0.0)]
    elif shape == "star":
        points = []
        for k in range(10):
            radius = 1.2 * r if k % 2 == 0 else 0.5 * r
            angle = -math.pi / 2 + k * math.pi / 5
            points.append((radius * math.cos(angle), radius * math.sin(angle)))
    else:
        raise ValueError(f"no polygon for shape {shape!r}")
    return np.array([(cx + x, cy + y) for x, y in points], dtype=np.float64)


def shape_outline(shape: str, cx: float, cy: float, r: float, circle_vertices: int = 24) -> np.ndarray:
    """Outline of a shape as an [K, 2] float array of (x, y) vertices (circles become K-gons)."""
    if shape == "circle":
        angles = np.arange(circle_vertices) * (2 * math.pi / circle_vertices)
        return np.stack([cx + r * np.cos(angles), cy + r * np.sin(angles)], axis=1)
    return _polygon(shape, cx, cy, r)


def rasterize(shape: str, cx: float, cy: float, r: float, height: int, width: int) -> np.ndarray:
    """Boolean [H, W] mask of the shape; pixel (x, y) is inside when its centre is inside the shape."""
    if shape == "circle":
        ys, xs = np.ogrid[:height, :width]
        return (xs - cx) ** 2 + (ys - cy) ** 2 <= r * r
    canvas = np.zeros((height, width), dtype=np.uint8)
    scale = 1 << POLYGON_SHIFT_BITS
    points = np.round(_polygon(shape, cx, cy, r) * scale).astype(np.int32)
    cv2.fillPoly(canvas, [points], 1, lineType=cv2.LINE_8, shift=POLYGON_SHIFT_BITS)
    return canvas.astype(bool)


def make_background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A low-saturation textured background [H, W, 3] float32: blotches, fine grain and faint stripes."""
    grey = rng.uniform(85.0, 165.0)
    tint = rng.uniform(-10.0, 10.0, size=3)
    coarse_shape = (4, 6)
    coarse = rng.normal(0.0, 22.0, size=coarse_shape + (1,)) + rng.normal(0.0, 5.0, size=coarse_shape + (3,))
    coarse = cv2.resize(coarse.astype(np.float32), (width, height), interpolation=cv2.INTER_CUBIC)
    fine_shape = (max(2, height // 4), max(2, width // 4))
    fine = rng.normal(0.0, 10.0, size=fine_shape + (1,)) + rng.normal(0.0, 3.0, size=fine_shape + (3,))
    fine = cv2.resize(fine.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    angle = rng.uniform(0.0, math.pi)
    period = rng.uniform(6.0, 18.0)
    ys, xs = np.mgrid[:height, :width].astype(np.float32)
    stripes = 7.0 * np.sin(2 * math.pi * (xs * math.cos(angle) + ys * math.sin(angle)) / period)
    return (grey + tint + coarse + fine + stripes[..., None]).astype(np.float32)


@dataclass
class Video:
    """A rendered-on-demand synthetic video.

    ``objects`` may be listed in any order; drawing follows ``SceneObject.depth``. All arrays are
    computed once and cached: ``frames`` [T, H, W, 3] uint8, ``amodal_masks`` and ``visible_masks``
    [N, T, H, W] bool (in ``objects`` order), ``label_maps`` [T, H, W] uint8 of visible object ids.
    """

    name: str
    height: int
    width: int
    num_frames: int
    objects: list[SceneObject]
    render_seed: int
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self):
        ids = [obj.obj_id for obj in self.objects]
        if len(set(ids)) != len(ids) or any(i < 1 or i > 255 for i in ids):
            raise ValueError(f"video {self.name}: object ids must be unique and in 1..255, got {ids}")

    @property
    def size(self) -> tuple[int, int]:
        return self.height, self.width

    def object_by_id(self, obj_id: int) -> SceneObject:
        for obj in self.objects:
            if obj.obj_id == obj_id:
                return obj
        raise KeyError(f"video {self.name} has no object {obj_id}")

    def index_of(self, obj_id: int) -> int:
        return self.objects.index(self.object_by_id(obj_id))

    @property
    def amodal_masks(self) -> np.ndarray:
        if "amodal" not in self._cache:
            masks = np.zeros((len(self.objects), self.num_frames, self.height, self.width), dtype=bool)
            for i, obj in enumerate(self.objects):
                for t in range(self.num_frames):
                    cx, cy = obj.centre(t)
                    masks[i, t] = rasterize(obj.shape, cx, cy, obj.radius, self.height, self.width)
            self._cache["amodal"] = masks
        return self._cache["amodal"]

    def _drawing_order(self) -> list[int]:
        return sorted(range(len(self.objects)), key=lambda i: self.objects[i].depth)

    @property
    def label_maps(self) -> np.ndarray:
        if "labels" not in self._cache:
            labels = np.zeros((self.num_frames, self.height, self.width), dtype=np.uint8)
            amodal = self.amodal_masks
            for i in self._drawing_order():
                labels[amodal[i]] = self.objects[i].obj_id
            self._cache["labels"] = labels
        return self._cache["labels"]

    @property
    def visible_masks(self) -> np.ndarray:
        if "visible" not in self._cache:
            labels = self.label_maps
            self._cache["visible"] = np.stack([labels == obj.obj_id for obj in self.objects]) if self.objects else \
                np.zeros((0, self.num_frames, self.height, self.width), dtype=bool)
        return self._cache["visible"]

    @property
    def frames(self) -> np.ndarray:
        if "frames" not in self._cache:
            self._cache["frames"] = self._render()
        return self._cache["frames"]

    def _render(self) -> np.ndarray:
        rng = np.random.default_rng(self.render_seed)
        background = make_background(rng, self.height, self.width)
        amodal = self.amodal_masks
        ys, xs = np.mgrid[:self.height, :self.width].astype(np.float32)
        # Sensor noise: a small bank of noise fields, shifted at random for each frame (cheap to draw).
        noise_bank = [BACKGROUND_NOISE_STD * rng.standard_normal(size=(self.height, self.width, 3), dtype=np.float32)
                      for _ in range(NOISE_BANK_SIZE)]
        frames = np.empty((self.num_frames, self.height, self.width, 3), dtype=np.uint8)
        for t in range(self.num_frames):
            canvas = background.copy()
            for i in self._drawing_order():
                obj = self.objects[i]
                region = amodal[i, t]
                if not region.any():
                    continue
                cx, cy = obj.centre(t)
                shading = 1.0 - 0.12 * ((ys[region] - cy) / max(obj.radius, 1.0))
                canvas[region] = np.asarray(COLOURS[obj.colour], dtype=np.float32) * shading[:, None]
            shift = (int(rng.integers(self.height)), int(rng.integers(self.width)))
            canvas += np.roll(noise_bank[t % len(noise_bank)], shift, axis=(0, 1))
            frames[t] = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
        return frames

    def visible_frames(self, obj_id: int) -> list[int]:
        """Frame indices where the object has at least one visible pixel."""
        masks = self.visible_masks[self.index_of(obj_id)]
        return [t for t in range(self.num_frames) if masks[t].any()]

    def describe(self, frame_names: Optional[list[str]] = None) -> dict:
        """JSON-ready summary of the video (for the sidecar file)."""
        summary = {
            "height": self.height,
            "width": self.width,
            "num_frames": self.num_frames,
            "objects": {str(obj.obj_id): obj.describe() for obj in self.objects},
        }
        if frame_names is not None:
            summary["frames"] = list(frame_names)
        return summary
