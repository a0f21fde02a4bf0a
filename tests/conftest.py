"""Shared test helpers: where the reference data lives, and how to compare with it."""
import json
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

LAUNCHER_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "SLURM_PROCID",
                      "SLURM_NTASKS", "SLURM_LOCALID", "SLURM_JOB_NODELIST", "SLURM_NODELIST", "SLURM_JOB_ID")


@pytest.fixture(autouse=True)
def no_launcher_variables_leak():
    """Fail the test that leaves launcher variables behind: a later in-process ``inference.main`` would take the
    test process for rank 5 of 8 and wait 30 minutes for a rendezvous."""
    before = {name: os.environ.get(name) for name in LAUNCHER_VARIABLES}
    yield
    after = {name: os.environ.get(name) for name in LAUNCHER_VARIABLES}
    leaked = {name: value for name, value in after.items() if value != before[name]}
    if leaked:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        pytest.fail(f"the test left launcher variables changed: {leaked}")


# A manifest's ``family`` field -> our ``--model`` for it (Tapall is the MeViS-2024 fork of MUTR).
MANIFEST_VARIANTS = {"referformer": "referformer", "sgmg": "sgmg", "mutr": "mutr", "tapall": "mutr",
                     "tfvos": "tfvos", "dshmp": "dshmp"}
# Families whose checkpoints have the ReferFormer layout (``backbone.0.body.*``, ``transformer.*``, ...).
REFERFORMER_LAYOUT_FAMILIES = ("referformer", "sgmg", "mutr", "tapall", "tfvos")


def checkpoint_manifests(families=None):
    """(path, family) of every checkpoint manifest (a JSON with ``family`` and ``keys``), routed by its
    ``family`` field; only those of ``families`` when given."""
    found = []
    for path in sorted((REFERENCE_DIR / "manifests").glob("*.json")):
        data = json.loads(path.read_text())
        if not isinstance(data, dict) or "keys" not in data or "family" not in data:
            continue
        if data["family"] not in MANIFEST_VARIANTS:
            raise AssertionError(f"{path}: unknown family {data['family']!r}; add it to MANIFEST_VARIANTS")
        if families is None or data["family"] in families:
            found.append((path, data["family"]))
    return found


def skip_unless_variant_exists(family: str) -> str:
    """Our ``--model`` for a manifest family; skips (naming it) while that variant is not built yet."""
    from rvos.models.variants import MODEL_NAMES

    variant = MANIFEST_VARIANTS[family]
    if variant not in MODEL_NAMES:
        pytest.skip(f"the {variant} variant is not built yet (manifest family {family!r})")
    return variant


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
