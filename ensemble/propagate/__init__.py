"""Propagators: a key frame's mask carried forward to the last frame and backward to the first.

``Propagator`` is the interface, ``build_propagator(spec)`` makes one from a recipe's spec (``type`` in
``PROPAGATOR_TYPES``), and ``propagate_from_key_frame`` runs one as the ensemble does (the empty-key-mask fallback
and test-time augmentation). docs/PROPAGATION.md is the guide.
"""
from rvos.ensemble.propagate.augment import propagate_from_key_frame
from rvos.ensemble.propagate.base import Propagator
from rvos.ensemble.propagate.registry import PROPAGATOR_TYPES, build_propagator

__all__ = ["Propagator", "PROPAGATOR_TYPES", "build_propagator", "propagate_from_key_frame"]
