"""Random-number state: seeding, capture/restore for exact resume, and per-sample data seeding.

Two sources of randomness are kept apart:

* the **process** generators (Python ``random``, NumPy, torch CPU and every CUDA device) drive the model
  (dropout, drop-path); each rank seeds them with ``seed + rank`` as the original, and a checkpoint stores
  :func:`capture_rng_state` of every rank;
* the **data** augmentations draw from Python ``random`` inside ``Dataset.__getitem__`` (see
  ``datasets/transforms_video.py``). :class:`SeededSampler` / :class:`SeededDataset` reseed them for every sample
  from ``(seed, epoch, index)``, so a sample's augmentation does not depend on the number of DataLoader workers,
  the world size or where a run was resumed: the order comes from the resumable sampler and the content from
  the seed, which is what makes mid-epoch resume exact.

A captured state holds only tensors, ints, floats and strings, so checkpoints load with ``weights_only=True``.
"""
import random
from typing import Any, Dict, Iterator, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler


def seed_everything(seed: int) -> None:
    """Seed Python ``random``, NumPy and torch (CPU and all CUDA devices)."""
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


def _numpy_state() -> Dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"bit_generator": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}


def _set_numpy_state(state: Dict[str, Any]) -> None:
    keys = state["keys"].numpy().astype(np.uint32)
    np.random.set_state((state["bit_generator"], keys, state["pos"], state["has_gauss"], state["cached_gaussian"]))


def capture_rng_state() -> Dict[str, Any]:
    """This process's generators: ``python``, ``numpy``, ``torch`` (CPU) and ``cuda`` (one state per device)."""
    version, internal, gauss = random.getstate()
    return {
        "python": {"version": version, "state": torch.tensor(internal, dtype=torch.int64), "gauss_next": gauss},
        "numpy": _numpy_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng_state(state: Dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`. CUDA states are restored for the devices both runs have."""
    python = state["python"]
    random.setstate((python["version"], tuple(int(v) for v in python["state"].tolist()), python["gauss_next"]))
    _set_numpy_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    cuda_states = state.get("cuda") or []
    if cuda_states and torch.cuda.is_available():
        for device, device_state in enumerate(cuda_states[:torch.cuda.device_count()]):
            torch.cuda.set_rng_state(device_state, device)


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed for dataset item ``index`` in ``epoch`` (independent streams via NumPy SeedSequence)."""
    words = np.random.SeedSequence([seed, epoch, index]).generate_state(2, dtype=np.uint32)
    return int(words[0]) << 31 ^ int(words[1])


class SeededSampler(Sampler):
    """Wraps an index sampler that has an ``epoch`` attribute (``ResumableDistributedSampler``) and yields
    ``(index, sample_seed(seed, epoch, index))``; every other attribute (``set_epoch``, ``advance``,
    ``state_dict``, ...) is the wrapped sampler's."""

    def __init__(self, sampler: Sampler, seed: int):
        self.sampler = sampler
        self.seed = seed

    def __iter__(self) -> Iterator[Tuple[int, int]]:
        epoch = int(getattr(self.sampler, "epoch", 0))
        for index in self.sampler:
            yield index, sample_seed(self.seed, epoch, index)

    def __len__(self) -> int:
        return len(self.sampler)

    def __getattr__(self, name: str):
        if name == "sampler":
            raise AttributeError(name)
        return getattr(self.sampler, name)


class SeededDataset(Dataset):
    """``dataset[(index, seed)]`` = ``dataset[index]`` drawn with Python ``random``, NumPy and the torch CPU
    generator seeded from ``seed``; the caller's generator states are restored afterwards (so loading in the
    main process, ``num_workers=0``, does not disturb the model's randomness)."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: Tuple[int, int]):
        index, seed = item
        saved = (random.getstate(), np.random.get_state(), torch.get_rng_state())
        try:
            random.seed(seed)
            np.random.seed(seed % 2 ** 32)
            torch.default_generator.manual_seed(seed)
            return self.dataset[index]
        finally:
            random.setstate(saved[0])
            np.random.set_state(saved[1])
            torch.set_rng_state(saved[2])
