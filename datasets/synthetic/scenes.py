"""Scene recipes: which shapes a video holds and how they move.

A recipe guarantees the situation a kind of referring expression needs:

- ``distinct``: every shape looks different (appearance expressions suffice);
- ``motion_twins``: two identical shapes move in opposite directions, often crossing paths and
  occluding each other, so only their motion tells them apart (impossible from one frame);
- ``position_twins``: two identical shapes move together, side by side (left/right) or one
  above the other, so only their relative position tells them apart;
- ``group2``: two shapes of one kind but different colours moving the same way (for expressions
  that refer to several objects);
- ``group3``: three identical shapes, two moving one way and the third another, so "the two
  squares moving up" needs the motion and "the three squares" refers to all of them.

Other shapes in the video get looks of their own. One of them may leave the frame (``leaving=
"exit"``) or come in from outside (``"enter"``), so it is absent from some frames.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from .world import COLOURS, DIRECTION_VECTORS, OPPOSITE_DIRECTION, SHAPES, Look, SceneObject, radius_for

RECIPES = ("distinct", "motion_twins", "position_twins", "group2", "group3")
MIN_OBJECTS = {"distinct": 1, "motion_twins": 2, "position_twins": 2, "group2": 2, "group3": 3}
MOVING_DIRECTIONS = ("left", "right", "up", "down")
STILL_PROBABILITY = 0.15
HORIZONTAL_TWIN_PROBABILITY = 0.75
PLACEMENT_ATTEMPTS = 40


@dataclass
class _Spec:
    """A shape before placement: its look, motion and the role the recipe gave it."""

    look: Look
    direction: str
    role: str
    path: str = "stay"


class SceneBuilder:
    """Builds the :class:`SceneObject` list of one video from a recipe, using ``rng`` only."""

    def __init__(self, rng: np.random.Generator, height: int, width: int, num_frames: int,
                 shape_sizes: Sequence[str] = ("small", "big")):
        if num_frames < 1:
            raise ValueError("a video needs at least one frame")
        self.rng = rng
        self.height = height
        self.width = width
        self.num_frames = num_frames
        self.shape_sizes = tuple(shape_sizes)

    def build(self, recipe: str, num_objects: int, *, static: bool = False, leaving: Optional[str] = None,
              crossing: Optional[bool] = None, separation: Optional[str] = None) -> list[SceneObject]:
        """Objects for one video.

        ``static`` keeps every shape still (single images); ``leaving`` makes one extra shape
        ``"exit"`` or ``"enter"`` the frame; ``crossing`` forces (or forbids) crossing paths for
        motion twins; ``separation`` (``"x"`` or ``"y"``) forces side-by-side or stacked position
        twins when they are still.
        """
        if static and recipe == "motion_twins":
            raise ValueError("motion twins cannot be static")
        if separation not in (None, "x", "y"):
            raise ValueError(f"separation must be None, 'x' or 'y', got {separation!r}")
        if recipe not in RECIPES:
            raise ValueError(f"unknown recipe {recipe!r}; expected one of {RECIPES}")
        if num_objects < MIN_OBJECTS[recipe]:
            raise ValueError(f"recipe {recipe!r} needs at least {MIN_OBJECTS[recipe]} objects, got {num_objects}")
        if leaving not in (None, "exit", "enter"):
            raise ValueError(f"leaving must be None, 'exit' or 'enter', got {leaving!r}")
        specs = self._specs(recipe, num_objects, static)
        if leaving is not None and not static and self.num_frames >= 3:
            movable = [s for s in specs if s.role == "extra"]
            if movable:
                chosen = movable[int(self.rng.integers(len(movable)))]
                chosen.path = leaving
                if chosen.direction == "still":
                    chosen.direction = str(self.rng.choice(MOVING_DIRECTIONS))
        placements = self._place(specs, recipe, crossing, separation)
        depths = self.rng.permutation(len(specs))
        return [
            SceneObject(obj_id=i + 1, look=spec.look, radius=radius, start=start, direction=spec.direction,
                        speed=speed, depth=int(depths[i]))
            for i, (spec, (radius, start, speed)) in enumerate(zip(specs, placements))
        ]

    def _direction(self, static: bool) -> str:
        if static or self.num_frames == 1 or self.rng.random() < STILL_PROBABILITY:
            return "still"
        return str(self.rng.choice(MOVING_DIRECTIONS))

    def _random_look(self, shapes: Sequence[str] = SHAPES) -> Look:
        return Look(str(self.rng.choice(shapes)), str(self.rng.choice(list(COLOURS))),
                    str(self.rng.choice(self.shape_sizes)))

    def _new_look(self, taken: list[Look], shapes: Sequence[str] = SHAPES) -> Look:
        """A look not in ``taken``; often a near-miss of one (same shape, other colour or size)."""
        colours = list(COLOURS)
        for _ in range(200):
            draw = self.rng.random()
            similar = [look for look in taken if look.shape in shapes]
            if similar and draw < 0.35:
                base = similar[int(self.rng.integers(len(similar)))]
                look = Look(base.shape, str(self.rng.choice(colours)), base.size)
            elif similar and draw < 0.5 and len(self.shape_sizes) > 1:
                base = similar[int(self.rng.integers(len(similar)))]
                other_sizes = [s for s in self.shape_sizes if s != base.size]
                look = Look(base.shape, base.colour, str(self.rng.choice(other_sizes)))
            else:
                look = self._random_look(shapes)
            if look not in taken:
                return look
        raise RuntimeError("could not find an unused look")

    def _specs(self, recipe: str, num_objects: int, static: bool) -> list[_Spec]:
        specs: list[_Spec] = []
        taken: list[Look] = []
        if recipe in ("motion_twins", "position_twins"):
            look = self._random_look()
            taken.append(look)
            if recipe == "motion_twins":
                axis_choices = ("left", "right") if self.rng.random() < HORIZONTAL_TWIN_PROBABILITY else ("up", "down")
                first = str(self.rng.choice(axis_choices))
                directions = (first, OPPOSITE_DIRECTION[first])
            else:
                shared = self._direction(static)
                directions = (shared, shared)
            specs += [_Spec(look, directions[0], "twin"), _Spec(look, directions[1], "twin")]
        elif recipe in ("group2", "group3"):
            shape = str(self.rng.choice(SHAPES))
            shared = self._direction(static)
            if shared == "still" and recipe == "group3":
                shared = str(self.rng.choice(MOVING_DIRECTIONS))
            if recipe == "group2":
                for _ in range(2):
                    look = self._new_look(taken, shapes=(shape,))
                    taken.append(look)
                    specs.append(_Spec(look, shared, "group"))
            else:
                look = self._random_look(shapes=(shape,))
                taken.append(look)
                other = str(self.rng.choice([d for d in MOVING_DIRECTIONS + ("still",) if d != shared]))
                specs += [_Spec(look, shared, "group"), _Spec(look, shared, "group"), _Spec(look, other, "group_odd")]
        group_shapes = {spec.look.shape for spec in specs if spec.role.startswith("group")}
        other_shapes = tuple(s for s in SHAPES if s not in group_shapes)
        while len(specs) < num_objects:
            look = self._new_look(taken, shapes=other_shapes)
            taken.append(look)
            specs.append(_Spec(look, self._direction(static), "extra"))
        return specs

    def _axis(self, direction: str) -> tuple[int, int]:
        """(motion axis index 0=x / 1=y, sign) of a direction; still shapes use x."""
        dx, dy = DIRECTION_VECTORS[direction]
        if dx:
            return 0, int(dx)
        if dy:
            return 1, int(dy)
        return 0, 0

    def _length(self, axis: int) -> float:
        return float(self.width - 1 if axis == 0 else self.height - 1)

    def _stay_range(self, length: float, radius: float, velocity: float) -> tuple[float, float, float]:
        """(low, high, velocity) for a start coordinate that keeps the shape inside for all frames."""
        travel_frames = self.num_frames - 1
        room = length - 2 * radius
        if abs(velocity) * travel_frames > room:
            velocity = math.copysign(0.9 * room / max(travel_frames, 1), velocity)
        low = radius + max(0.0, -velocity) * travel_frames
        high = length - radius - max(0.0, velocity) * travel_frames
        return low, max(low, high), velocity

    def _speed(self, axis: int) -> float:
        return float(self.rng.uniform(0.02, 0.045)) * self._length(axis)

    def _exit_path(self, axis: int, sign: int, radius: float) -> tuple[float, float]:
        """(start coordinate on the axis, speed) of a shape visible at frame 0 and gone before the last frame."""
        length = self._length(axis)
        last = self.num_frames - 1
        exit_frame = int(self.rng.integers(max(1, math.ceil(last / 2)), max(2, last)))
        depth_inside = float(self.rng.uniform(0.0, length / 3))
        if sign > 0:
            start = length - radius - depth_inside
            speed = (length + radius + 1.0 - start) / exit_frame
        else:
            start = radius + depth_inside
            speed = (start + radius + 1.0) / exit_frame
        return start, speed

    def _place(self, specs: list[_Spec], recipe: str, crossing: Optional[bool],
               separation: Optional[str]) -> list[tuple[float, tuple, float]]:
        placements: list[Optional[tuple[float, tuple, float]]] = [None] * len(specs)
        twins = [i for i, s in enumerate(specs) if s.role == "twin"]
        if twins:
            radius = radius_for(specs[twins[0]].look.size, self.height, self.width)
            if recipe == "motion_twins":
                pair = self._place_motion_twins(specs[twins[0]], radius, crossing)
            else:
                pair = self._place_position_twins(specs[twins[0]], radius, separation)
            for index, placement in zip(twins, pair):
                placements[index] = placement
        for i, spec in enumerate(specs):
            if placements[i] is None:
                placements[i] = self._place_single(spec, [p for p in placements if p is not None])
        return placements  # type: ignore[return-value]

    def _clearance(self, radius: float, start: tuple[float, float], placed: list) -> float:
        if not placed:
            return math.inf
        return min(math.hypot(start[0] - other[1][0], start[1] - other[1][1]) - radius - other[0] for other in placed)

    def _place_single(self, spec: _Spec, placed: list) -> tuple[float, tuple, float]:
        radius = radius_for(spec.look.size, self.height, self.width)
        axis, sign = self._axis(spec.direction)
        best = None
        for _ in range(PLACEMENT_ATTEMPTS):
            if spec.path == "stay":
                speed = self._speed(axis) if sign else 0.0
                low, high, velocity = self._stay_range(self._length(axis), radius, sign * speed)
                along = float(self.rng.uniform(low, high))
                speed = abs(velocity)
            else:
                exit_sign = sign if spec.path == "exit" else -sign
                along, speed = self._exit_path(axis, exit_sign, radius)
                if spec.path == "enter":
                    along = along + exit_sign * speed * (self.num_frames - 1)
            perp_length = self._length(1 - axis)
            across = float(self.rng.uniform(radius, perp_length - radius))
            start = (along, across) if axis == 0 else (across, along)
            score = self._clearance(radius, start, placed) if spec.path == "stay" else math.inf
            if best is None or score > best[0]:
                best = (score, (radius, start, speed))
            if score >= 2.0:
                break
        return best[1]

    def _place_motion_twins(self, first: _Spec, radius: float, crossing: Optional[bool]):
        axis, sign = self._axis(first.direction)
        length = self._length(axis)
        travel = self.num_frames - 1
        cross = bool(self.rng.random() < 0.6) if crossing is None else crossing
        if cross and travel > 0:
            margin = 0.15 * length
            low_start = float(self.rng.uniform(radius, radius + margin))
            high_start = float(self.rng.uniform(min(max(length - radius - margin, low_start + 2 * radius + 2.0),
                                                    length - radius), length - radius))
            fastest = min(length - radius - low_start, high_start - radius) / travel
            slowest = min(fastest, 1.1 * (high_start - low_start) / (2 * travel))
            speed = float(self.rng.uniform(slowest, fastest))
        else:
            low, high, velocity = self._stay_range(length, radius, self._speed(axis))
            speed = abs(velocity)
            low_start = float(self.rng.uniform(low, high))
            high_start = float(self.rng.uniform(radius + speed * travel, max(radius + speed * travel, length - radius)))
        perp_length = self._length(1 - axis)
        across_first = float(self.rng.uniform(radius, perp_length - radius))
        offset = float(self.rng.uniform(-1.2, 1.2)) * radius
        across_second = float(np.clip(across_first + offset, radius, perp_length - radius))
        # The shape moving towards +axis starts at the low end.
        starts = [low_start, high_start] if sign > 0 else [high_start, low_start]
        result = []
        for along, across in zip(starts, (across_first, across_second)):
            start = (along, across) if axis == 0 else (across, along)
            result.append((radius, start, speed))
        return result

    def _place_position_twins(self, first: _Spec, radius: float, separation: Optional[str]):
        axis, sign = self._axis(first.direction)
        if sign:
            separation_axis = 1 - axis
        elif separation is not None:
            separation_axis = 0 if separation == "x" else 1
        else:
            separation_axis = int(self.rng.integers(2))
        speed = self._speed(axis) if sign else 0.0
        low, high, velocity = self._stay_range(self._length(axis), radius, sign * speed)
        speed = abs(velocity)
        sep_length = self._length(separation_axis)
        gap = float(self.rng.uniform(2.6, 3.6)) * radius
        gap = min(gap, sep_length - 2 * radius)
        low_sep = float(self.rng.uniform(radius, max(radius, sep_length - radius - gap)))
        result = []
        for sep_coord in (low_sep, low_sep + gap):
            along = float(self.rng.uniform(low, high))
            if sign == 0:
                along = float(self.rng.uniform(radius, self._length(1 - separation_axis) - radius))
            start = (sep_coord, along) if separation_axis == 0 else (along, sep_coord)
            result.append((radius, start, speed))
        return result
