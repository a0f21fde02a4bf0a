"""MultiScaleDeformableAttention forward + backward speed: the CUDA kernels against the PyTorch path, in one run.

The default problem is the deformable encoder's self-attention of ReferFormer Video-Swin-B on a 5-frame clip of
360x640: the frames are the batch, the four feature levels are the backbone's strides 8, 16, 32 and one more
stride-2 convolution (45x80, 23x40, 12x20, 6x10: 4820 queries per frame), 8 heads of 32 channels, 4 points.
Inputs are random (softmax attention weights, locations slightly beyond the map), the same for every
implementation. ``bfloat16`` runs the op on bf16 inputs under autocast, as ``--amp bf16`` training does (both
paths compute in float32 there, see docs/OPS.md). Each (dtype, implementation) gets ``--warmup`` untimed and
``--repeats`` timed forward + backward passes (CUDA-synchronised wall clock); the median is reported with the
peak memory of one pass and the largest difference to the PyTorch path's output and gradients.

    python tools/benchmark_ops.py --device cuda --json out/ops.json
    python tools/benchmark_ops.py --device cpu --frames 1 --height 64 --width 96 --impls pytorch
"""
import argparse
import logging
import math
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rvos.evaluation.report import save_json  # noqa: E402
from rvos.models.ops import get_msda_impl, is_extension_available, ms_deform_attn, set_msda_impl  # noqa: E402
from rvos.models.ops.check import forward_backward, make_problem, max_relative_differences  # noqa: E402

logger = logging.getLogger("benchmark_ops")

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class OpShape:
    """One op call: ``frames`` clips' frames as the batch, the feature levels of a ``height`` x ``width`` input
    (backbone strides 8, 16, 32, then stride-2 steps), every position of every level a query."""

    frames: int = 5
    height: int = 360
    width: int = 640
    levels: int = 4
    heads: int = 8
    head_dim: int = 32
    points: int = 4

    def level_shapes(self) -> List[Tuple[int, int]]:
        """(H, W) per level: the patch embedding's stride 4, then a halving (rounded up) per level."""
        height, width = math.ceil(self.height / 4), math.ceil(self.width / 4)
        shapes = []
        for _ in range(self.levels):
            height, width = math.ceil(height / 2), math.ceil(width / 2)
            shapes.append((height, width))
        return shapes

    @property
    def queries(self) -> int:
        return sum(h * w for h, w in self.level_shapes())


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_forward_backward(problem, device: torch.device, dtype: torch.dtype, warmup: int,
                          repeats: int) -> Tuple[List[float], Optional[float], Dict[str, torch.Tensor]]:
    """(seconds of each timed pass, peak MiB of one pass on a GPU, the last pass's output and gradients)."""
    autocast = dtype != torch.float32

    def one_pass():
        with torch.autocast(device.type, dtype=dtype, enabled=autocast):
            return forward_backward(ms_deform_attn, problem)

    for _ in range(warmup):
        one_pass()
    _synchronize(device)
    peak = None
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        baseline = torch.cuda.memory_allocated(device)
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        results = one_pass()
        _synchronize(device)
        seconds.append(time.perf_counter() - start)
    if device.type == "cuda":
        peak = (torch.cuda.max_memory_allocated(device) - baseline) / 2 ** 20
    return seconds, peak, results


def benchmark_op(shape: OpShape = OpShape(), device="cuda", dtypes: Sequence[str] = ("float32", "bfloat16"),
                 impls: Sequence[str] = ("cuda", "pytorch"), warmup: int = 3, repeats: int = 10,
                 seed: int = 0) -> Dict:
    """Median forward + backward time of each (dtype, implementation), its speed-up over the PyTorch path and its
    largest relative difference to it (``max |a - e| / max(1, max |e|)`` over the output and the three gradients).

    Implementations that cannot run here (``cuda`` without the extension or off a GPU) are left out with the reason.
    """
    device = torch.device(device)
    rows, skipped = [], {}
    usable = [impl for impl in impls if impl != "cuda" or (device.type == "cuda" and is_extension_available())]
    for impl in impls:
        if impl not in usable:
            skipped[impl] = "needs a CUDA device and the built extension"
    previous = get_msda_impl()
    try:
        for dtype_name in dtypes:
            dtype = DTYPES[dtype_name]
            problem = make_problem(batch=shape.frames, num_query=shape.queries, n_heads=shape.heads,
                                   d_head=shape.head_dim, level_shapes=shape.level_shapes(), n_points=shape.points,
                                   dtype=torch.float32, device=device, seed=seed)
            problem = problem.to(device, dtype)
            results, dtype_rows = {}, []
            for impl in usable:
                set_msda_impl(impl)
                seconds, peak, results[impl] = time_forward_backward(problem, device, dtype, warmup, repeats)
                dtype_rows.append({"dtype": dtype_name, "impl": impl, "median_ms": 1e3 * statistics.median(seconds),
                                   "min_ms": 1e3 * min(seconds), "peak_memory_mib": peak})
            reference = next((row for row in dtype_rows if row["impl"] == "pytorch"), None)
            for row in dtype_rows if reference is not None else ():
                differences = max_relative_differences(results[row["impl"]], results["pytorch"])
                row["max_relative_difference"] = max(differences.values())
                row["speedup_over_pytorch"] = reference["median_ms"] / row["median_ms"]
            rows += dtype_rows
    finally:
        set_msda_impl(previous)
    return {"device": str(device), "device_name": device_name(device), "shape": asdict(shape),
            "level_shapes": shape.level_shapes(), "queries_per_frame": shape.queries, "warmup": warmup,
            "repeats": repeats, "rows": rows, "skipped": skipped}


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({torch.get_num_threads()} torch threads)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = OpShape()
    for name in ("frames", "height", "width", "levels", "heads", "head_dim", "points"):
        parser.add_argument(f"--{name}", type=int, default=getattr(defaults, name))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtypes", nargs="+", default=list(DTYPES), choices=list(DTYPES))
    parser.add_argument("--impls", nargs="+", default=["cuda", "pytorch"], choices=["cuda", "pytorch"])
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--json", type=Path, default=None, help="write the results to this JSON file")
    return parser


def main(argv=None) -> Dict:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    shape = OpShape(**{name: getattr(args, name) for name in asdict(OpShape())})
    result = benchmark_op(shape, args.device, args.dtypes, args.impls, args.warmup, args.repeats)
    for row in result["rows"]:
        logger.info("%-8s %-7s %8.2f ms (min %.2f)%s%s", row["dtype"], row["impl"], row["median_ms"], row["min_ms"],
                    f", {row['speedup_over_pytorch']:.2f}x the PyTorch path" if "speedup_over_pytorch" in row else "",
                    f", max rel. diff {row['max_relative_difference']:.1e}" if "max_relative_difference" in row else "")
    for impl, reason in result["skipped"].items():
        logger.info("%s: skipped (%s)", impl, reason)
    if args.json:
        save_json(result, args.json)
    return result


if __name__ == "__main__":
    main()
