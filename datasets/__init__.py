"""Benchmarks: training/eval datasets, inference readers and writers, evaluators, the synthetic world."""
from .registry import build_dataset

__all__ = ["build_dataset"]
