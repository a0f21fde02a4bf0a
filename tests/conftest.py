"""Shared test helpers: where the reference data lives, and how to compare with it."""
import os
import sys
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
REFERENCE_DIR = Path(os.environ.get("RVOS_REFERENCE_DIR", REPO_ROOT.parent / "shared" / "reference"))

if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    if not REFERENCE_DIR.is_dir():
        pytest.fail(f"reference data not found at {REFERENCE_DIR} (expected ../shared/reference beside the checkout)")
    return REFERENCE_DIR


def is_stats_only(x) -> bool:
    return isinstance(x, dict) and x.get("__stats_only__", False)


def assert_matches_stats(actual: torch.Tensor, stats: dict, atol: float) -> None:
    """Compare a tensor with a reference stored as statistics (see fixtures/README.md)."""
    assert list(actual.shape) == list(stats["shape"]), (list(actual.shape), stats["shape"])
    flat = actual.detach().double().flatten()
    step = max(1, flat.numel() // 4096)
    sample = flat[::step]
    ref = stats["strided_sample"].double()
    assert sample.shape == ref.shape
    assert (sample - ref).abs().max().item() <= atol
    assert abs(flat.min().item() - stats["min"]) <= atol
    assert abs(flat.max().item() - stats["max"]) <= atol
    assert abs(flat.mean().item() - stats["mean"]) <= atol
