"""J&F evaluation speed: evaluation.metrics (vectorised) against the literal per-frame transcription of the official code.

Both run in this one process on the same synthetic frames: smooth random blobs covering about 15% of the image,
and as prediction the blob dilated by 2 px and shifted by (4, -3) px (the setting of the official timings in
shared/reference/metrics/timing.md). The J and F values of the two implementations must be identical. The runs
are interleaved and repeated; wall-clock minimum and median and the process CPU time (robust to other jobs on a
shared machine) are reported, and the speed ratios from the minima.

    python tools/benchmark_metrics.py --frames 300 --height 480 --width 854
"""
import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rvos.evaluation.metrics import (boundary_map, boundary_radius, disk_kernel, reference_boundary_f_measure,  # noqa: E402
                          reference_region_similarity, region_and_boundary)


def synthetic_masks(n_frames: int, height: int, width: int, seed: int = 0, coverage: float = 0.15,
                    blob_size: int = 80):
    """GT blobs and predictions, bool [T, H, W] each: smooth noise (one random value per ``blob_size`` pixels,
    bicubic upsampling) thresholded at ``coverage``; the prediction is the GT dilated by 2 px, shifted (4, -3)."""
    rng = np.random.default_rng(seed)
    shift_y, shift_x = 4, -3
    kernel = disk_kernel(2)
    gt = np.empty((n_frames, height, width), dtype=bool)
    pred = np.empty_like(gt)
    for frame in range(n_frames):
        noise = rng.random((max(2, height // blob_size), max(2, width // blob_size))).astype(np.float32)
        smooth = cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC)
        gt[frame] = smooth > np.quantile(smooth, 1 - coverage)
        dilated = cv2.dilate(gt[frame].view(np.uint8), kernel).view(bool)
        pred[frame] = np.roll(dilated, (shift_y, shift_x), axis=(0, 1))
    return gt, pred


def run_reference(gt: np.ndarray, pred: np.ndarray):
    """Per-frame official algorithm -> (J [T], F [T])."""
    jaccard = np.array([reference_region_similarity(g, p) for g, p in zip(gt, pred)])
    boundary = np.array([reference_boundary_f_measure(g, p) for g, p in zip(gt, pred)])
    return jaccard, boundary


def cpu_model() -> str:
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown CPU"
    fields = dict(line.split(":", 1) for line in lscpu.splitlines() if ":" in line)
    return f"{fields.get('Model name', '?').strip()}, {fields.get('CPU(s)', '?').strip()} CPUs"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=300, help="number of frames (default 300)")
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=854)
    parser.add_argument("--repeats", type=int, default=5, help="interleaved timing repeats (default 5)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--blob-size", type=int, default=80,
                        help="smoothness of the blobs in pixels; smaller means more, smaller blobs (default 80)")
    parser.add_argument("--cv2-threads", type=int, default=None, help="cv2.setNumThreads (default: cv2's own)")
    args = parser.parse_args(argv)
    if args.cv2_threads is not None:
        cv2.setNumThreads(args.cv2_threads)

    gt, pred = synthetic_masks(args.frames, args.height, args.width, args.seed, blob_size=args.blob_size)
    implementations = {"reference": run_reference, "vectorised": region_and_boundary}
    for run in implementations.values():
        run(gt[:2], pred[:2])  # warm-up
    wall = {name: [] for name in implementations}
    cpu = {name: [] for name in implementations}
    outputs = {}
    for _ in range(args.repeats):
        for name, run in implementations.items():
            start_wall, start_cpu = time.perf_counter(), time.process_time()
            outputs[name] = run(gt, pred)
            wall[name].append(time.perf_counter() - start_wall)
            cpu[name].append(time.process_time() - start_cpu)
    for name, ours, theirs in zip("JF", outputs["vectorised"], outputs["reference"]):
        if not np.array_equal(ours, theirs):
            raise AssertionError(f"{name} differs between the implementations on "
                                 f"{np.count_nonzero(ours != theirs)} of {args.frames} frames")

    per_frame = {name: [1e3 * value / args.frames for value in (min(wall[name]), statistics.median(wall[name]),
                                                                   min(cpu[name]))] for name in wall}
    speedup = min(wall["reference"]) / min(wall["vectorised"])
    cpu_speedup = min(cpu["reference"]) / min(cpu["vectorised"])
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    print(f"machine: {cpu_model()} (load average {load}); Python {platform.python_version()}, "
          f"numpy {np.__version__}, opencv {cv2.__version__} ({cv2.getNumThreads()} cv2 threads)")
    print(f"data: {args.frames} frames {args.height}x{args.width}, bound_pix {boundary_radius(args.height, args.width)}"
          f", GT coverage {gt.mean():.1%}, {np.count_nonzero(boundary_map(gt)) / args.frames:.0f} GT boundary px/frame"
          f", mean J {outputs['vectorised'][0].mean():.3f}, mean F {outputs['vectorised'][1].mean():.3f}")
    for name, (best, median, cpu_best) in per_frame.items():
        print(f"{name:>10}: {best:.3f} ms/frame wall (min of {args.repeats}), {median:.3f} median, "
              f"{cpu_best:.3f} CPU (min)")
    print(f"speed ratio: {speedup:.1f}x wall (min/min), {cpu_speedup:.1f}x CPU time; J and F identical on all frames")
    return {"per_frame_ms": per_frame, "speedup": speedup, "cpu_speedup": cpu_speedup}


if __name__ == "__main__":
    main()
