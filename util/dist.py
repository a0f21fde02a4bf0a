"""torch.distributed helpers that also work in a single process."""
import torch
import torch.distributed as dist


def is_dist_avail_and_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_world_size() -> int:
    return dist.get_world_size() if is_dist_avail_and_initialized() else 1


def get_rank() -> int:
    return dist.get_rank() if is_dist_avail_and_initialized() else 0


def is_main_process() -> bool:
    return get_rank() == 0


def all_reduce_mean_count(count: torch.Tensor) -> float:
    """Mean over ranks of a scalar count tensor (the count itself in a single process)."""
    if is_dist_avail_and_initialized():
        count = count.clone()
        dist.all_reduce(count)
        count = count / get_world_size()
    return float(count.item())
