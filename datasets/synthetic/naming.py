"""Deterministic names and random streams.

Every video draws from its own random stream, derived from (seed, dataset, split, index), so
asking for more videos never changes the ones already there, and the same seed always gives the
same files.
"""
from __future__ import annotations

import base64
import hashlib

import numpy as np


def _digest(*parts: object) -> bytes:
    return hashlib.sha256("|".join(str(part) for part in parts).encode("utf-8")).digest()


def video_rng(seed: int, dataset: str, split: str, index: int, purpose: str = "scene") -> np.random.Generator:
    """The random stream of one video (or image) for one purpose."""
    entropy = int.from_bytes(_digest("rng", seed, dataset, split, index, purpose)[:16], "little")
    return np.random.default_rng(entropy)


def hex_id(seed: int, dataset: str, split: str, index: int, length: int) -> str:
    """A lowercase hex video id (Ref-YouTube-VOS uses 10 characters, MeViS 12)."""
    return _digest("id", seed, dataset, split, index).hex()[:length]


def youtube_id(seed: int, dataset: str, split: str, index: int) -> str:
    """An 11-character YouTube-style id ([A-Za-z0-9_-]) as A2D-Sentences uses."""
    return base64.urlsafe_b64encode(_digest("id", seed, dataset, split, index)).decode("ascii")[:11]


def frame_names(count: int, start: int = 0, stride: int = 1) -> list[str]:
    """Zero-padded 5-digit frame names ``start, start+stride, ...``."""
    return [f"{start + stride * i:05d}" for i in range(count)]
