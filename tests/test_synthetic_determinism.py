"""Same seed, same bytes: every file of every synthetic dataset is reproducible."""
import hashlib
from pathlib import Path

import pytest

from rvos.datasets.synthetic import DATASET_NAMES, make_dataset

# Fewer frames for the mp4/PNG-heavy datasets keeps this test fast; the code paths are the same.
SMALLER = {"a2d": {"num_frames": 8}, "jhmdb": {"num_frames": 6}}


def _digest(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("name", DATASET_NAMES)
def test_same_seed_gives_identical_files(name, tmp_path):
    sizes = SMALLER.get(name, {})
    first = _digest(make_dataset(name, tmp_path / "first", seed=11, **sizes))
    second = _digest(make_dataset(name, tmp_path / "second", seed=11, **sizes))
    other = _digest(make_dataset(name, tmp_path / "other", seed=12, **sizes))
    assert first and first == second
    assert first != other


def test_more_videos_keep_the_earlier_ones(tmp_path):
    small = make_dataset("mevis", tmp_path / "small", seed=3, num_videos=2)
    large = make_dataset("mevis", tmp_path / "large", seed=3, num_videos=3)
    small_videos = sorted(p.name for p in (small / "train/JPEGImages").iterdir())
    for video in small_videos:
        assert _digest(small / "train/JPEGImages" / video) == _digest(large / "train/JPEGImages" / video)
