"""A distributed sampler that can resume in the middle of an epoch.

``ResumableDistributedSampler`` shards like ``torch.utils.data.DistributedSampler`` (same permutation
for a given seed and epoch, same padding, same interleaved split across ranks) and additionally keeps
how many samples of the current epoch were consumed. The training loop reports finished samples with
``advance``; ``state_dict`` / ``load_state_dict`` carry epoch and progress so that a resumed run sees
exactly the remaining samples in the same order (across all ranks; the world size may even change).
"""
import math
from typing import Iterator, List, Optional

import torch
import torch.distributed as dist
from torch.utils.data import Dataset, Sampler


def _default_world() -> tuple:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


class ResumableDistributedSampler(Sampler[int]):
    """Rank ``rank`` of ``num_replicas`` yields its share of the epoch's order, skipping consumed samples.

    Epoch order: ``torch.randperm(N)`` seeded with ``seed + epoch`` (or ``range(N)`` without shuffle).
    ``consumed`` counts samples of that order already used by all ranks together; the remaining ones
    are padded by repeating the order from its start (or truncated with ``drop_last``) to a multiple of
    the world size and dealt out round-robin, rank r taking positions r, r + W, ... With nothing
    consumed this is exactly ``DistributedSampler``.
    """

    def __init__(self, dataset: Dataset, num_replicas: Optional[int] = None, rank: Optional[int] = None,
                 shuffle: bool = True, seed: int = 0, drop_last: bool = False):
        world, own_rank = _default_world()
        self.num_replicas = world if num_replicas is None else num_replicas
        self.rank = own_rank if rank is None else rank
        if not 0 <= self.rank < self.num_replicas:
            raise ValueError(f"rank {self.rank} is outside [0, {self.num_replicas})")
        self.dataset = dataset
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.epoch = 0
        self.consumed = 0

    def epoch_order(self) -> List[int]:
        """All dataset indices in this epoch's order (unpadded)."""
        size = len(self.dataset)
        if not self.shuffle:
            return list(range(size))
        generator = torch.Generator()
        generator.manual_seed(self.seed + self.epoch)
        return torch.randperm(size, generator=generator).tolist()

    def _remaining(self) -> List[int]:
        order = self.epoch_order()
        remaining = order[self.consumed:]
        if self.drop_last:
            return remaining[:len(remaining) - len(remaining) % self.num_replicas]
        padding = -len(remaining) % self.num_replicas
        if padding and order:
            repeats = math.ceil(padding / len(order))
            remaining += (order * repeats)[:padding]
        return remaining

    def __iter__(self) -> Iterator[int]:
        return iter(self._remaining()[self.rank::self.num_replicas])

    def __len__(self) -> int:
        """Samples this rank still yields in the current epoch."""
        remaining = max(0, len(self.dataset) - self.consumed)
        if self.drop_last:
            return remaining // self.num_replicas
        return math.ceil(remaining / self.num_replicas)

    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch``; progress is kept only when it is the epoch already in progress (a resume)."""
        if epoch != self.epoch:
            self.consumed = 0
        self.epoch = epoch

    def advance(self, samples_per_rank: int) -> None:
        """Record that every rank finished ``samples_per_rank`` more samples (call after each step)."""
        self.consumed += samples_per_rank * self.num_replicas

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "consumed": self.consumed, "seed": self.seed, "shuffle": self.shuffle,
                "dataset_size": len(self.dataset)}

    def load_state_dict(self, state: dict) -> None:
        """Restore epoch and progress; the dataset size, seed and shuffle must match the saved ones."""
        for key, current in (("dataset_size", len(self.dataset)), ("seed", self.seed), ("shuffle", self.shuffle)):
            if key in state and state[key] != current:
                raise ValueError(f"sampler state was saved with {key}={state[key]!r} but this sampler has {current!r}")
        self.epoch = int(state["epoch"])
        self.consumed = int(state["consumed"])
