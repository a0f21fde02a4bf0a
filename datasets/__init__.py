"""Benchmark data for training and evaluation: one loader per benchmark, clip sampling, video transforms,
samplers and collation (``build_dataset``), the synthetic world (``synthetic``) and the dataset checks
(``checks``).

``build_dataset`` is imported lazily so tools that only read or write files start without torch.
"""

__all__ = ["build_dataset"]


def __getattr__(name):
    if name == "build_dataset":
        from .registry import build_dataset
        return build_dataset
    raise AttributeError(f"module 'rvos.datasets' has no attribute {name!r}")
