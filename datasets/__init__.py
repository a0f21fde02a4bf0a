"""Benchmarks: training/eval datasets, inference readers and writers, evaluators, the synthetic world.

``build_dataset`` is imported lazily so tools that only read or write files start without torch.
"""

__all__ = ["build_dataset"]


def __getattr__(name):
    if name == "build_dataset":
        from .registry import build_dataset
        return build_dataset
    raise AttributeError(f"module 'datasets' has no attribute {name!r}")
