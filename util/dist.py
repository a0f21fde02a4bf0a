"""torch.distributed helpers that also work in a single process, and the process-group setup for every launcher.

``init_distributed_mode(args)`` recognises, in this order:

* ``torchrun`` / ``python -m torch.distributed.launch [--use_env]``: ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``
  (or ``--local_rank`` / ``--local-rank`` from the legacy launcher without ``--use_env``), ``MASTER_ADDR``,
  ``MASTER_PORT``;
* SLURM (``srun python main.py ...``, one task per GPU): ``SLURM_PROCID``, ``SLURM_NTASKS``, ``SLURM_LOCALID``;
  the master is ``MASTER_ADDR`` when set, else the first host of ``SLURM_JOB_NODELIST``; the port is
  ``MASTER_PORT`` when set, else derived from ``SLURM_JOB_ID`` so that jobs sharing a node do not collide;
* anything else (plain ``python main.py``, or a single SLURM task): one process, no process group.

The backend is NCCL on CUDA and gloo on CPU.
"""
import datetime
import logging
import os
import re
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import torch
import torch.distributed as dist

logger = logging.getLogger(__name__)

DEFAULT_MASTER_PORT = 29500
SLURM_PORT_BASE = 15000
SLURM_PORT_RANGE = 20000


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


@dataclass(frozen=True)
class DistContext:
    """Where this process sits: global ``rank`` of ``world_size``, ``local_rank`` on its node, the launcher
    that started it (``torchrun``, ``slurm`` or ``single``) and the torch.distributed ``backend`` (None alone)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    launcher: str = "single"
    backend: Optional[str] = None

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def first_slurm_host(nodelist: str) -> str:
    """The first host name of a SLURM node list: ``gpu[03-05,9],cpu1`` -> ``gpu03``; ``node7`` -> ``node7``."""
    first = re.split(r",(?![^\[]*\])", nodelist.strip())[0]
    match = re.fullmatch(r"([^\[]*)\[([^\]]+)\](.*)", first)
    if match is None:
        return first
    prefix, ranges, suffix = match.groups()
    return f"{prefix}{ranges.split(',')[0].split('-')[0]}{suffix}"


def _env_int(name: str) -> Optional[int]:
    value = os.environ.get(name)
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from None


def detect_launch(local_rank_arg: Optional[int] = None) -> DistContext:
    """Rank, world size and local rank from the environment (see the module docstring); sets MASTER_ADDR and
    MASTER_PORT for SLURM. ``local_rank_arg``: ``--local_rank`` from the legacy launcher, if any."""
    rank, world = _env_int("RANK"), _env_int("WORLD_SIZE")
    if rank is not None and world is not None:
        local = _env_int("LOCAL_RANK")
        if local is None:
            local = local_rank_arg if local_rank_arg is not None else rank % max(torch.cuda.device_count(), 1)
        return DistContext(rank, world, local, "torchrun")
    slurm_rank, slurm_world = _env_int("SLURM_PROCID"), _env_int("SLURM_NTASKS")
    if slurm_rank is not None and slurm_world is not None and slurm_world > 1:
        local = _env_int("SLURM_LOCALID") or 0
        if not os.environ.get("MASTER_ADDR"):
            nodelist = os.environ.get("SLURM_JOB_NODELIST") or os.environ.get("SLURM_NODELIST")
            if not nodelist:
                raise RuntimeError("SLURM launch with several tasks but neither MASTER_ADDR nor SLURM_JOB_NODELIST "
                                   "is set; export MASTER_ADDR=<first node>")
            os.environ["MASTER_ADDR"] = first_slurm_host(nodelist)
        if not os.environ.get("MASTER_PORT"):
            job = _env_int("SLURM_JOB_ID") or 0
            os.environ["MASTER_PORT"] = str(SLURM_PORT_BASE + job % SLURM_PORT_RANGE)
        os.environ.update(RANK=str(slurm_rank), WORLD_SIZE=str(slurm_world), LOCAL_RANK=str(local))
        return DistContext(slurm_rank, slurm_world, local, "slurm")
    return DistContext(0, 1, local_rank_arg or 0, "single")


def init_distributed_mode(args, timeout_minutes: int = 30) -> DistContext:
    """Start the process group for any launcher and pin this process to its GPU (``cuda:<local rank>``).

    Reads ``args.device`` and ``args.local_rank``; sets ``args.distributed``, ``args.rank``, ``args.world_size``,
    ``args.gpu`` (the local rank) as the original DETR-style scripts did, and returns the :class:`DistContext`.
    """
    ctx = detect_launch(getattr(args, "local_rank", None))
    use_cuda = str(args.device).startswith("cuda")
    if use_cuda and not torch.cuda.is_available():
        raise RuntimeError(f"--device {args.device} was requested but CUDA is not available; pass --device cpu")
    if use_cuda:
        torch.cuda.set_device(ctx.local_rank)
    if ctx.distributed:
        backend = "nccl" if use_cuda else "gloo"
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(DEFAULT_MASTER_PORT))
        kwargs = {"device_id": torch.device("cuda", ctx.local_rank)} if use_cuda else {}
        dist.init_process_group(backend=backend, init_method="env://", world_size=ctx.world_size, rank=ctx.rank,
                                timeout=datetime.timedelta(minutes=timeout_minutes), **kwargs)
        ctx = DistContext(ctx.rank, ctx.world_size, ctx.local_rank, ctx.launcher, backend)
        dist.barrier()
    args.distributed, args.rank, args.world_size, args.gpu = ctx.distributed, ctx.rank, ctx.world_size, ctx.local_rank
    return ctx


def destroy_process_group() -> None:
    if is_dist_avail_and_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if is_dist_avail_and_initialized():
        dist.barrier()


def all_gather_object(obj: Any) -> List[Any]:
    """Every rank's ``obj`` (picklable), in rank order; ``[obj]`` in a single process."""
    if not is_dist_avail_and_initialized():
        return [obj]
    gathered: List[Any] = [None] * get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def all_gather_tensors(tensor: torch.Tensor) -> torch.Tensor:
    """Every rank's ``tensor`` (the same shape on every rank) concatenated along dim 0 in rank order, without
    gradient; the tensor itself in a single process."""
    if not is_dist_avail_and_initialized():
        return tensor.detach()
    gathered = [torch.empty_like(tensor) for _ in range(get_world_size())]
    dist.all_gather(gathered, tensor.detach().contiguous())
    return torch.cat(gathered, dim=0)


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank."""
    if not is_dist_avail_and_initialized():
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=src)
    return holder[0]


def reduce_dict(values: Dict[str, torch.Tensor], average: bool = True) -> Dict[str, torch.Tensor]:
    """Sum (or mean) over ranks of a dict of scalar tensors, the same keys on every rank; detached."""
    if not values:
        return {}
    keys = sorted(values)
    stacked = torch.stack([values[k].detach().float().reshape(()) for k in keys])
    if is_dist_avail_and_initialized():
        dist.all_reduce(stacked)
        if average:
            stacked /= get_world_size()
    return dict(zip(keys, stacked))


def any_rank(flag: bool, device: Optional[torch.device] = None) -> bool:
    """True when ``flag`` is true on at least one rank (every rank must call it)."""
    if not is_dist_avail_and_initialized():
        return bool(flag)
    tensor = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item() > 0)
