"""Referring expressions for the synthetic world, with the kind of cue each one needs.

Kinds (recorded in the sidecar json so a benchmark can report J&F per kind):

- ``appearance``: shape / colour / size single the object out ("the small red circle");
- ``motion``: the object has look-alikes and only its direction of motion singles it out
  ("the square moving left"); a single frame cannot resolve it;
- ``position``: look-alikes move the same way and only their relative position singles the
  object out ("the circle on the left");
- ``multi``: the expression refers to two or more objects ("the two squares moving up").

Every expression is checked against the scene: the set of objects its words match is exactly
its target set. ``needs_motion`` says whether the motion words are needed for that.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

import numpy as np

from .world import SHAPE_PLURALS, Video

KINDS = ("appearance", "motion", "position", "multi")
SINGLE_ATTRIBUTE_SETS = (("shape",), ("colour", "shape"), ("size", "shape"), ("size", "colour", "shape"))
GROUP_ATTRIBUTE_SETS = SINGLE_ATTRIBUTE_SETS + (("colour",), ())
POSITIONS = ("left", "right", "top", "bottom")
COUNT_WORDS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}
STYLES = ("video", "refcoco", "refcocog")


@dataclass(frozen=True)
class Expression:
    """A referring expression and what it refers to (``obj_ids`` are the video's object ids)."""

    text: str
    kind: str
    obj_ids: tuple[int, ...]
    needs_motion: bool

    def record(self) -> dict:
        """JSON-ready fields for the sidecar file."""
        return {"exp": self.text, "kind": self.kind, "needs_motion": self.needs_motion}


@dataclass(frozen=True)
class _Query:
    """Words of a description: (attribute, value) pairs, optional direction and position."""

    values: tuple[tuple[str, str], ...]
    direction: Optional[str] = None
    position: Optional[str] = None

    @property
    def attributes(self) -> tuple[str, ...]:
        return tuple(attr for attr, _ in self.values)


class Describer:
    """Finds unambiguous expressions for the objects of one video.

    ``frames`` restricts what the describer may rely on (e.g. ``[0]`` for DAVIS first-frame
    expressions or single images); motion words are only used when it holds several frames.
    ``style`` picks the wording family: ``video`` (Ref-YouTube-VOS, MeViS, DAVIS, A2D, JHMDB),
    ``refcoco`` (terse, "red circle on left") or ``refcocog`` (longer sentences).
    """

    def __init__(self, video: Video, rng: np.random.Generator, frames: Optional[Sequence[int]] = None,
                 style: str = "video"):
        if style not in STYLES:
            raise ValueError(f"unknown style {style!r}; expected one of {STYLES}")
        self.video = video
        self.rng = rng
        self.style = style
        self.frames = list(range(video.num_frames)) if frames is None else list(frames)
        self.motion_visible = len(self.frames) > 1
        amodal = video.amodal_masks
        self._on_screen = {obj.obj_id: [bool(amodal[i, t].any()) for t in range(video.num_frames)]
                           for i, obj in enumerate(video.objects)}

    # ------------------------------------------------------------------ matching
    def matches(self, query: _Query) -> frozenset[int]:
        """Ids of the objects the words of ``query`` fit."""
        candidates = [obj for obj in self.video.objects
                      if all(getattr(obj, attr) == value for attr, value in query.values)]
        if query.direction is not None:
            candidates = [obj for obj in candidates if obj.direction == query.direction]
        if query.position is None:
            return frozenset(obj.obj_id for obj in candidates)
        return frozenset(obj.obj_id for obj in candidates if self._is_extreme(obj, candidates, query.position))

    def _is_extreme(self, target, candidates, position: str) -> bool:
        """True when ``target`` is the left/right/top/bottom-most candidate in every frame both are on screen."""
        axis = 0 if position in ("left", "right") else 1
        lower_wins = position in ("left", "top")
        compared = False
        for t in self.frames:
            if not self._on_screen[target.obj_id][t]:
                continue
            mine = target.centre(t)[axis]
            for other in candidates:
                if other.obj_id == target.obj_id or not self._on_screen[other.obj_id][t]:
                    continue
                theirs = other.centre(t)[axis]
                margin = 0.5 * max(target.radius, other.radius)
                if (mine > theirs - margin) if lower_wins else (mine < theirs + margin):
                    return False
                compared = True
        return compared

    def _query(self, obj, attributes: Iterable[str], direction: Optional[str] = None,
               position: Optional[str] = None) -> _Query:
        return _Query(tuple((attr, getattr(obj, attr)) for attr in attributes), direction, position)

    # ------------------------------------------------------------------ single objects
    def cues_for(self, obj_id: int) -> Optional[tuple[str, tuple[str, ...], Optional[str], Optional[str]]]:
        """(kind, attributes, direction, position) of the simplest unambiguous description, or None.

        A ``position`` description carries a direction only when the position alone is not enough.
        """
        obj = self.video.object_by_id(obj_id)
        target = frozenset([obj_id])
        for attributes in SINGLE_ATTRIBUTE_SETS:
            if self.matches(self._query(obj, attributes)) == target:
                return "appearance", attributes, None, None
        if self.motion_visible:
            for attributes in SINGLE_ATTRIBUTE_SETS:
                if self.matches(self._query(obj, attributes, obj.direction)) == target:
                    return "motion", attributes, obj.direction, None
        directions = [None] + ([obj.direction] if self.motion_visible else [])
        for attributes in SINGLE_ATTRIBUTE_SETS:
            for direction in directions:
                for position in POSITIONS:
                    if self.matches(self._query(obj, attributes, direction, position)) == target:
                        return "position", attributes, direction, position
        return None

    def refer(self, obj_id: int, detailed: bool = False, mention_motion: Optional[bool] = None) -> Optional[Expression]:
        """An expression for one object.

        ``detailed`` names every attribute; ``mention_motion`` adds the direction of motion even
        when it is not needed (None: half of the detailed expressions do).

        Returns None when no wording singles the object out (e.g. it is off screen in every
        allowed frame and has an identical twin).
        """
        cues = self.cues_for(obj_id)
        if cues is None:
            return None
        kind, attributes, direction, position = cues
        needs_motion = direction is not None
        obj = self.video.object_by_id(obj_id)
        if detailed:
            attributes = ("size", "colour", "shape")
        if mention_motion is None:
            mention_motion = detailed and bool(self.rng.random() < 0.5)
        if direction is None and mention_motion and self.motion_visible:
            direction = obj.direction
        query = self._query(obj, attributes, direction, position)
        if self.matches(query) != frozenset([obj_id]):
            raise AssertionError(f"expression for object {obj_id} of {self.video.name} is ambiguous")
        return Expression(self._single_text(obj, attributes, direction, position), kind, (obj_id,), needs_motion)

    # ------------------------------------------------------------------ groups
    def groups(self, max_expressions: int) -> list[Expression]:
        """Expressions that refer to two or more objects, larger groups first.

        Descriptions without motion words are tried first, so ``needs_motion`` is True only
        when no static wording picks out the same set.
        """
        found: dict[frozenset, _Query] = {}
        everyone = frozenset(obj.obj_id for obj in self.video.objects)
        directions = [None] + (sorted({obj.direction for obj in self.video.objects}) if self.motion_visible else [])
        for direction in directions:
            for attributes in GROUP_ATTRIBUTE_SETS:
                for obj in self.video.objects:
                    query = self._query(obj, attributes, direction)
                    if direction is not None and obj.direction != direction:
                        continue
                    members = self.matches(query)
                    says_nothing = members == everyone and not attributes and direction is None
                    if len(members) < 2 or members in found or says_nothing:
                        continue
                    found[members] = query
        ordered = sorted(found.items(), key=lambda item: -len(item[0]))
        expressions = []
        for members, query in ordered[:max_expressions]:
            sample = self.video.object_by_id(min(members))
            needs_motion = query.direction is not None
            text = self._group_text(sample, query.attributes, query.direction, len(members))
            expressions.append(Expression(text, "multi", tuple(sorted(members)), needs_motion))
        return expressions

    # ------------------------------------------------------------------ wording
    def _choose(self, options: Sequence[str]) -> str:
        return options[int(self.rng.integers(len(options)))]

    @staticmethod
    def _appearance(obj, attributes: Sequence[str], plural: bool = False) -> str:
        words = [getattr(obj, attr) for attr in ("size", "colour") if attr in attributes]
        if "shape" in attributes:
            words.append(SHAPE_PLURALS[obj.shape] if plural else obj.shape)
        else:
            words.append("shapes" if plural else "shape")
        return " ".join(words)

    def _motion(self, direction: str, plural: bool = False) -> str:
        if direction == "still":
            return self._choose(("that stay still", "that do not move") if plural else
                                ("that stays still", "that does not move", "standing still"))
        if plural:
            return self._choose((f"moving {direction}", f"that move {direction}", f"going {direction}"))
        return self._choose((f"moving {direction}", f"that moves {direction}", f"going {direction}"))

    def _position(self, position: str) -> str:
        if self.style == "refcoco":
            return {"left": "on left", "right": "on right", "top": "on top", "bottom": "at bottom"}[position]
        if self.style == "refcocog":
            return {"left": "that is on the left side of the picture",
                    "right": "that is on the right side of the picture",
                    "top": "that is at the top of the picture",
                    "bottom": "that is at the bottom of the picture"}[position]
        return {"left": "on the left", "right": "on the right", "top": "at the top",
                "bottom": "at the bottom"}[position]

    def _single_text(self, obj, attributes, direction, position) -> str:
        noun = self._appearance(obj, attributes)
        if self.style == "refcoco":
            if position in ("left", "right") and direction is None and self.rng.random() < 0.5:
                return f"{position} {noun}"
            parts = [noun]
        elif self.style == "refcocog":
            parts = [self._choose(("the", "a")), noun]
        else:
            parts = ["the", noun]
        if direction is not None:
            parts.append(self._motion(direction))
        if position is not None:
            parts.append(self._position(position))
        elif self.style == "refcocog":
            parts.append("in the picture")
        return " ".join(parts)

    def _group_text(self, sample, attributes, direction, count) -> str:
        noun = self._appearance(sample, attributes, plural=True)
        counted = COUNT_WORDS.get(count, str(count))
        lead = self._choose((f"the {counted} {noun}", f"both {noun}" if count == 2 else f"all {counted} {noun}"))
        if direction is None:
            return lead
        return f"{lead} {self._motion(direction, plural=True)}"
