"""A few training iterations of a recipe: seconds per iteration and peak memory, with the real training step.

The model of ``--config`` (random weights; no pretrained file is read) trains for ``--iterations`` batches of the
Ref-YouTube-VOS layout under ``--ytvos_path`` (e.g. the synthetic world at 360x640:
``python tools/make_synthetic_data.py --dataset ytvos --root DIR``), through the trainer's own pieces: the dataset
and collation, the optimiser of ``--lr*`` and ``engine.train_one_epoch`` (``--amp``, gradient clipping). Reported:
the median seconds per iteration after ``--warmup`` iterations (CUDA-synchronised; data loading included, with
``--num_workers`` loader processes), the peak memory (``torch.cuda.max_memory_allocated``; None on a CPU), the
parameter counts and the last loss. Any other option of ``main.py`` may follow.

    python tools/benchmark_train_steps.py --config configs/referformer/video_swin_t_p4w7_ytvos.yaml \\
        --text_encoder TE_DIR --ytvos_path DATA --amp bf16 --iterations 12 --json out/train.json
"""
import argparse
import itertools
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Dict, List

import torch
from torch.utils.data import DataLoader

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rvos import opts  # noqa: E402
from rvos.datasets.collate import collate_fn  # noqa: E402
from rvos.datasets.registry import build_dataset  # noqa: E402
from rvos.engine import TrainOptions, train_one_epoch  # noqa: E402
from rvos.evaluation.report import save_json  # noqa: E402
from rvos.models import build_model  # noqa: E402
from rvos.util.optim import build_optimizer  # noqa: E402
from rvos.util.train_state import scaler_for  # noqa: E402

logger = logging.getLogger("benchmark_train_steps")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     parents=[opts.get_args_parser()])
    parser.add_argument("--iterations", type=int, default=12, help="training iterations (batches) to run")
    parser.add_argument("--warmup", type=int, default=3, help="first iterations left out of the median")
    parser.add_argument("--json", type=Path, default=None, help="write the results to this JSON file")
    return parser


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def benchmark_training(args) -> Dict:
    """Train ``args.iterations`` batches of ``args``' recipe; see the module docstring for what is returned."""
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    model, criterion, _ = build_model(args)
    model.to(device)
    criterion.to(device)
    optimizer, _ = build_optimizer(model, args)
    dataset = build_dataset("train", args)
    loader = DataLoader(dataset, batch_size=args.batch_size, shuffle=True, collate_fn=collate_fn, drop_last=True,
                        num_workers=args.num_workers, pin_memory=device.type == "cuda",
                        generator=torch.Generator().manual_seed(args.seed))
    if len(loader) == 0:
        raise ValueError(f"{args.ytvos_path}: {len(dataset)} training samples, fewer than one batch of "
                         f"{args.batch_size}")
    batches = itertools.chain.from_iterable(itertools.repeat(loader))
    stamps: List[float] = []

    def stamp(done: int, stepped: bool) -> bool:
        _synchronize(device)
        stamps.append(time.perf_counter())
        return done >= args.iterations

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    _synchronize(device)
    stamps.append(time.perf_counter())
    stats = train_one_epoch(model, criterion, batches, optimizer, device, epoch=0,
                            options=TrainOptions(max_norm=args.clip_max_norm, amp=args.amp, print_freq=10 ** 9),
                            num_iterations=args.iterations, scaler=scaler_for(args.amp, device),
                            after_iteration=stamp)
    durations = [later - earlier for earlier, later in zip(stamps, stamps[1:])]
    warmup = args.warmup if len(durations) > args.warmup else 0
    return {
        "config": args.config, "backbone": args.backbone, "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU",
        "amp": args.amp, "batch_size": args.batch_size, "num_frames": args.num_frames, "max_size": args.max_size,
        "iterations": len(durations), "warmup": warmup,
        "seconds_per_iteration": statistics.median(durations[warmup:]), "first_iteration_seconds": durations[0],
        "peak_memory_mib": torch.cuda.max_memory_allocated(device) / 2 ** 20 if device.type == "cuda" else None,
        "parameters": sum(p.numel() for p in model.parameters()),
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "loss": stats["loss"],
    }


def main(argv=None) -> Dict:
    args = opts.parse_args(argv, build_parser())
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    result = benchmark_training(args)
    memory = f"{result['peak_memory_mib']:.0f} MiB peak" if result["peak_memory_mib"] is not None else "CPU"
    logger.info("%s (%s, %s): %.3f s/iteration over %d iterations after %d warm-up, %s, loss %.3f",
                result["config"], result["device_name"], result["amp"] or "fp32", result["seconds_per_iteration"],
                result["iterations"] - result["warmup"], result["warmup"], memory, result["loss"])
    if args.json:
        save_json(result, args.json)
    return result


if __name__ == "__main__":
    main()
