"""Inference speed: shared-backbone mode against the original per-expression mode, in one run.

A synthetic video of ``--frames`` JPEG frames of ``--orig_height`` x ``--orig_width`` (default twice the
model input, like a 1280x720 Ref-YouTube-VOS frame resized to 640x360) is segmented for ``--expressions``
expressions, by the real inference code (``predict``):

- per-expression (the original scripts): for every expression, decode and resize the frames, run the
  whole model (``model(samples, [caption], [target])``), choose the query, upsample the masks to the frame
  size and threshold them;
- shared (``inference.py`` default): decode the frames once, run the visual backbone once
  (``encode_video``), then text encoding + decoding + the same post-processing per expression.

The per-expression run is timed by stage, which gives s, the share of its time spent on what the
shared mode does once (frame decoding and resizing, the visual backbone); with E expressions the ideal
speed-up is E / (s + E (1 - s)). Reported: E, s, the ideal and achieved speed-ups, their ratio, frames per
second, peak memory (``torch.cuda.max_memory_allocated`` on GPU; the peak resident set size sampled every
5 ms on CPU), GFLOPs per stage (``torch.utils.flop_counter``: matrix products, convolutions and attention,
2 FLOPs per multiply-add; element-wise ops and grid sampling are not counted) and whether the two modes'
masks are identical. Runs alternate between the modes (``--repeats``) and the fastest of each is used.
``--amp bf16`` (or fp16) runs both modes under autocast, as ``inference.py --amp`` does.
Both clocks are reported: wall (CUDA-synchronised) and the CPU time of this process (all threads), which is
the primary one on a CPU because other jobs on a shared machine inflate it less; use ``--threads 1`` there
(OpenMP threads spinning at barriers inflate CPU time under contention). Several ``--expressions`` values are
measured in one run: the per-expression runs of the largest give those of the smaller ones. Writing PNGs is
left out of both modes (inference.py does it in a thread pool).

    python tools/benchmark.py --config configs/tiny/referformer_tiny_synthetic.yaml --text_encoder DIR \\
        --frames 5 --height 96 --width 160 --expressions 4 --device cpu
    python tools/benchmark.py --backbone video_swin_b_p4w7 --with_box_refine --binary --text_encoder DIR \\
        --frames 3 --height 360 --width 640 --expressions 16 4 --device cpu --threads 1 --json out/bench.json

``--keyframe`` times TFVOS key-frame inference instead (``tools/benchmark_keyframe.py``).

A video model (``segment_video``: DsHmp) fuses the text into its backbone, so there is no shared mode: one
expression is segmented and its time and peak memory (above the memory before the run) reported. With
``--frame_counts 36 72`` every video length runs in a fresh process, once keeping the mask features of the whole
video (``--dshmp_mask_features keep``, the original) and once recomputing them per chunk (``recompute``):

    python tools/benchmark.py --model dshmp --text_encoder DIR --height 224 --width 400 --frame_counts 36 72 \\
        --device cpu --threads 1 --json out/dshmp_memory.json
"""
import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch
from PIL import Image

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rvos import opts  # noqa: E402
from rvos.predict.base import Benchmark, Expression, VideoJob, WindowPlan  # noqa: E402
from rvos.predict.engine import InferenceEngine  # noqa: E402
from rvos.predict.loading import load_video  # noqa: E402
from rvos.predict.benchmarks.ytvos import whole_video_plan  # noqa: E402
from rvos.models import build_model  # noqa: E402

logger = logging.getLogger("benchmark")

STAGES = ("encode_video", "encode_text", "decode")
CLOCKS = ("wall", "cpu")
RSS_INTERVAL = 0.005
WORDS = ("the", "small", "red", "circle", "moving", "left", "on", "big", "blue", "square", "right", "of", "a",
         "yellow", "triangle", "going", "up", "next", "to", "green", "star")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     parents=[opts.get_args_parser()])
    parser.add_argument("--frames", type=int, default=5, help="frames of the video (one window)")
    parser.add_argument("--height", type=int, default=360, help="model input height (resized short side)")
    parser.add_argument("--width", type=int, default=640, help="model input width")
    parser.add_argument("--orig_height", type=int, default=None, help="frame height on disk (default 2 x --height)")
    parser.add_argument("--orig_width", type=int, default=None, help="frame width on disk (default 2 x --width)")
    parser.add_argument("--expressions", type=int, nargs="+", default=[4],
                        help="expressions of the video (E); several values are measured in one run, the per-expression "
                             "runs of the largest E giving those of the smaller ones")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs of each mode (alternating)")
    parser.add_argument("--decode_batch", type=int, default=1, help="shared mode: expressions per decode call")
    parser.add_argument("--no_flops", action="store_true", help="skip the FLOP count (one extra forward)")
    parser.add_argument("--json", type=Path, default=None, help="write the results to this JSON file")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--keyframe", action="store_true",
                        help="TFVOS: time the key-frame pass against the whole-video pass, shared vs per-expression "
                             "(tools/benchmark_keyframe.py; the model is built as --model tfvos)")
    parser.add_argument("--frame_counts", type=int, nargs="+", default=None,
                        help="video models: measure each video length in a fresh process, keeping and recomputing "
                             "the mask features")
    return parser


# ------------------------------------------------------------------------------------------- inputs

class SyntheticVideo(Benchmark):
    """One video, every expression on the whole video (Ref-YouTube-VOS plan)."""

    name = "benchmark"

    def plan(self, job: VideoJob, num_frames: int) -> WindowPlan:
        return whole_video_plan(job, num_frames)


def write_frames(folder: Path, count: int, height: int, width: int, seed: int = 0) -> List[Path]:
    """JPEG frames of smooth random texture with moving blobs (JPEG decoding cost close to natural images)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(height // 16 + 2, width // 16 + 2, 3), dtype=np.uint8)
    background = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC), dtype=np.float32)
    yy, xx = np.mgrid[:height, :width]
    paths = []
    for t in range(count):
        frame = background + rng.normal(0, 6, size=background.shape)
        for k in range(3):
            cy, cx = height * (0.3 + 0.2 * k), width * (0.2 + 0.1 * t / max(count, 1) + 0.25 * k)
            blob = (yy - cy) ** 2 + (xx - cx) ** 2 < (min(height, width) * 0.08) ** 2
            frame[blob] = (60 * k, 200 - 50 * k, 90)
        path = folder / f"{5 * t:05d}.jpg"
        Image.fromarray(frame.clip(0, 255).astype(np.uint8)).save(path, quality=90)
        paths.append(path)
    return paths


def captions(count: int, seed: int = 0) -> List[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(4, 12)))) for _ in range(count)]


# ------------------------------------------------------------------------------------------- measuring

class Clock:
    """Wall-clock (CUDA synchronised) and CPU time (all threads of this process) since ``start``."""

    def __init__(self, device: torch.device):
        self.device = device

    def now(self) -> Dict[str, float]:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return {"wall": time.perf_counter(), "cpu": time.process_time()}

    def since(self, start: Dict[str, float]) -> Dict[str, float]:
        end = self.now()
        return {clock: end[clock] - start[clock] for clock in CLOCKS}


def add_times(total: Dict[str, float], part: Dict[str, float]) -> None:
    for clock in CLOCKS:
        total[clock] = total.get(clock, 0.0) + part[clock]


class StageTimer:
    """Time spent in the model's stage methods (wrapped on the instance), on both clocks."""

    def __init__(self, model: torch.nn.Module, clock: Clock):
        self.clock = clock
        self.reset()
        for stage in STAGES:
            setattr(model, stage, self._timed(stage, getattr(model, stage)))

    def _timed(self, stage: str, method):
        def run(*args, **kwargs):
            start = self.clock.now()
            result = method(*args, **kwargs)
            add_times(self.seconds[stage], self.clock.since(start))
            return result
        return run

    def reset(self) -> None:
        self.seconds = {stage: {clock: 0.0 for clock in CLOCKS} for stage in STAGES}


def current_rss() -> int:
    """Resident set size of this process in bytes (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


@contextmanager
def peak_memory(device: torch.device, result: Dict[str, float]):
    """Peak memory during the block: CUDA max allocated, or the peak RSS sampled by a thread."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        yield
        torch.cuda.synchronize(device)
        result["peak_memory_mb"] = torch.cuda.max_memory_allocated(device) / 2 ** 20
        result["memory_kind"] = "cuda max_memory_allocated"
        return
    peak = [current_rss()]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], current_rss())
            time.sleep(RSS_INTERVAL)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        result["peak_memory_mb"] = max(peak[0], current_rss()) / 2 ** 20
        result["memory_kind"] = "process peak RSS"


class Masks:
    """Collects each expression's binary masks (what inference.py writes as PNGs)."""

    def __init__(self, threshold: float):
        self.threshold = threshold
        self.masks: Dict[int, List[np.ndarray]] = {}

    def __call__(self, window, exp, output) -> None:
        self.masks.setdefault(exp, []).append((output.probabilities() > self.threshold).cpu().numpy())

    def stacked(self) -> Dict[int, np.ndarray]:
        return {exp: np.concatenate(parts) for exp, parts in self.masks.items()}


def run_per_expression(engine, job, load, timer, clock, threshold) -> List[Dict]:
    """The original: for every expression, read the frames and run the whole model. One record per expression."""
    records = []
    for exp in range(len(job.expressions)):
        masks = Masks(threshold)
        timer.reset()
        start = clock.now()
        video = load(job)
        load_time = clock.since(start)
        engine.run(job, video, {exp}, masks)
        records.append({"total": clock.since(start), "load": load_time, "stages": timer.seconds,
                        "masks": masks.stacked()[exp]})
    return records


def run_shared(engine, job, load, timer, clock, threshold) -> Dict:
    """Frames read once, the backbone once, every expression decoded on its features."""
    masks = Masks(threshold)
    timer.reset()
    start = clock.now()
    video = load(job)
    load_time = clock.since(start)
    engine.run(job, video, set(range(len(job.expressions))), masks)
    return {"total": clock.since(start), "load": load_time, "stages": timer.seconds, "masks": masks.stacked()}


def count_flops(model, video, job, device) -> Dict[str, float]:
    """GFLOPs of the backbone on the video and of text encoding + decoding of one expression."""
    from torch.utils.flop_counter import FlopCounterMode

    from rvos.predict.engine import normalize_frames
    from rvos.util.misc import nested_tensor_from_videos_list

    clip = normalize_frames(video.clip(range(video.num_frames)).to(device))
    samples = nested_tensor_from_videos_list([clip])
    size = torch.tensor([clip.shape[-2:]], device=device)
    with torch.no_grad():  # the FLOP counter's module tracker fails under inference_mode
        with FlopCounterMode(display=False) as backbone:
            visual = model.encode_video(samples)
        with FlopCounterMode(display=False) as expression:
            model.decode(visual, model.encode_text([job.expressions[0].text]), size)
    return {"backbone_gflops": backbone.get_total_flops() / 1e9,
            "expression_gflops": expression.get_total_flops() / 1e9}


def machine() -> str:
    """CPU model name (lscpu) and core count, or the GPU name."""
    name = platform.processor() or platform.machine()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        name = next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration, subprocess.SubprocessError):
        pass
    return f"{name}, {os.cpu_count()} cores"


# ------------------------------------------------------------------------------------------- main

def summarise(per_expression: List[Dict], shared: Dict, frames: int, primary: str) -> Dict:
    """Speed-up figures for E = len(per_expression) expressions, on both clocks (``primary`` first)."""
    num = len(per_expression)
    result = {"E": num, "primary_clock": primary}
    for clock in CLOCKS:
        total = sum(r["total"][clock] for r in per_expression)
        text_independent = sum(r["load"][clock] + r["stages"]["encode_video"][clock] for r in per_expression)
        s = text_independent / total
        ideal = num / (s + num * (1 - s))
        achieved = total / shared["total"][clock]
        result[clock] = {"s": s, "ideal_speedup": ideal, "achieved_speedup": achieved,
                         "fraction_of_ideal": achieved / ideal, "per_expression_seconds": total,
                         "shared_seconds": shared["total"][clock],
                         "per_expression_fps": frames * num / total, "shared_fps": frames * num / shared["total"][clock],
                         "per_expression_stage_seconds": stage_table(per_expression, clock),
                         "shared_stage_seconds": stage_table([shared], clock)}
    differing = sum(int((r["masks"] != shared["masks"][exp]).sum()) for exp, r in enumerate(per_expression))
    result.update(masks_identical=differing == 0 and all(r["masks"].shape == shared["masks"][exp].shape
                                                         for exp, r in enumerate(per_expression)),
                  differing_mask_pixels=differing)
    return result


def stage_table(records: List[Dict], clock: str) -> Dict[str, float]:
    """Seconds per stage summed over records: load, the model stages, and the rest (query choice, upsampling)."""
    table = {"load": sum(r["load"][clock] for r in records)}
    for stage in STAGES:
        table[stage] = sum(r["stages"][stage][clock] for r in records)
    table["other"] = sum(r["total"][clock] for r in records) - sum(table.values())
    return table


# ------------------------------------------------------------------------------------------- video models

def video_model_run(args, model, device: torch.device) -> Dict:
    """One expression on a ``--frames`` video with a video model (``segment_video``): time and peak memory."""
    orig_h, orig_w = args.orig_height or 2 * args.height, args.orig_width or 2 * args.width
    clock = Clock(device)
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(max(1, args.num_workers)) as pool:
        files = write_frames(Path(tmp), args.frames, orig_h, orig_w, args.seed)
        job = VideoJob("benchmark", [Expression("0", captions(1, args.seed)[0])], frame_files=files)
        video = load_video(job, SyntheticVideo(args), min(args.height, args.width), max(args.height, args.width),
                           pool)
        engine = InferenceEngine(model, device, multi_object=True)
        baseline = torch.cuda.memory_allocated(device) / 2 ** 20 if device.type == "cuda" else current_rss() / 2 ** 20
        memory: Dict[str, float] = {}
        with peak_memory(device, memory):
            start = clock.now()
            engine.run(job, video, {0}, Masks(args.threshold))
            seconds = clock.since(start)
    return {"machine": machine() if device.type == "cpu" else torch.cuda.get_device_name(device),
            "device": str(device), "torch_threads": torch.get_num_threads(), "frames": args.frames,
            "input_size": list(video.frames.shape[-2:]), "mask_features": args.dshmp_mask_features,
            "run_chunk": args.dshmp_run_chunk, "seconds": seconds, "peak_memory_mb": memory["peak_memory_mb"],
            "memory_above_start_mb": memory["peak_memory_mb"] - baseline, "memory_kind": memory["memory_kind"]}


def video_model_sweep(argv: List[str], args) -> Dict:
    """Every ``--frame_counts`` length x (keep, recompute), each in a fresh process (a process's peak memory only
    grows)."""
    base, skipping = [], False
    for arg in argv:  # this run's options without --frame_counts and its values
        skipping = arg == "--frame_counts" or (skipping and arg.isdigit())
        if not skipping:
            base.append(arg)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for frames in args.frame_counts:
            for mode in ("keep", "recompute"):
                out = Path(tmp) / f"{frames}_{mode}.json"
                subprocess.run([sys.executable, __file__, *base, "--frames", str(frames), "--dshmp_mask_features",
                                mode, "--json", str(out)], check=True)
                runs.append(json.loads(out.read_text()))
    lines = [f"machine: {runs[0]['machine']} ({runs[0]['device']}, {runs[0]['torch_threads']} torch threads), input "
             f"{runs[0]['input_size'][0]}x{runs[0]['input_size'][1]}, chunks of {runs[0]['run_chunk']} frames"]
    for run in runs:
        lines.append(f"{run['frames']:4d} frames, mask features {run['mask_features']:9s}: "
                     f"{run['seconds']['wall']:.1f} s wall, peak {run['peak_memory_mb']:.0f} MB "
                     f"(+{run['memory_above_start_mb']:.0f} MB above the start; {run['memory_kind']})")
    logger.info("\n".join(lines))
    return {"runs": runs}


def main(argv=None) -> Dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = opts.parse_args(argv, build_parser())
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.keyframe:
        from rvos.tools.benchmark_keyframe import run as keyframe_benchmark

        return keyframe_benchmark(args)
    if args.frame_counts:
        result = video_model_sweep(argv, args)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(result, indent=1))
        return result
    device = torch.device(args.device if args.device != "cuda" or torch.cuda.is_available() else "cpu")
    primary = "cpu" if device.type == "cpu" else "wall"
    torch.manual_seed(args.seed)
    model, _, _ = build_model(args)
    model.to(device).eval().requires_grad_(False)
    if getattr(model, "segment_video", None) is not None:
        result = video_model_run(args, model, device)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(result, indent=1))
        return result
    counts = sorted(set(args.expressions), reverse=True)
    orig_h, orig_w = args.orig_height or 2 * args.height, args.orig_width or 2 * args.width
    clock = Clock(device)
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(max(1, args.num_workers)) as pool:
        files = write_frames(Path(tmp), args.frames, orig_h, orig_w, args.seed)
        texts = captions(counts[0], args.seed)
        jobs = {n: VideoJob("benchmark", [Expression(str(i), t) for i, t in enumerate(texts[:n])], frame_files=files)
                for n in counts}

        def load(video_job):
            return load_video(video_job, SyntheticVideo(args), min(args.height, args.width),
                              max(args.height, args.width), pool)

        video = load(jobs[counts[0]])
        logger.info("model input %s, %d frames, E = %s, %s", tuple(video.frames.shape[-2:]), args.frames, counts, device)
        per_exp_engine = InferenceEngine(model, device, per_expression=True, amp=args.amp)
        shared_engine = InferenceEngine(model, device, decode_batch=args.decode_batch, amp=args.amp)
        flops = {} if args.no_flops else count_flops(model, video, jobs[counts[0]], device)
        timer = StageTimer(model, clock)
        shared_engine.run(jobs[counts[0]], video, {0}, Masks(args.threshold))  # warm-up on the same shapes
        per_expression, shared, memory = [], {n: [] for n in counts}, {}
        for _ in range(args.repeats):
            with peak_memory(device, memory.setdefault("per_expression", {})):
                per_expression.append(run_per_expression(per_exp_engine, jobs[counts[0]], load, timer, clock,
                                                         args.threshold))
            for n in counts:
                with peak_memory(device, memory.setdefault(f"shared_E{n}", {})):
                    shared[n].append(run_shared(shared_engine, jobs[n], load, timer, clock, args.threshold))
    fastest = [min((run[i] for run in per_expression), key=lambda r: r["total"][primary])
               for i in range(counts[0])]
    rows = []
    for n in sorted(counts):
        best_shared = min(shared[n], key=lambda r: r["total"][primary])
        row = summarise(fastest[:n], best_shared, args.frames, primary)
        row["peak_memory_mb"] = {"per_expression": memory["per_expression"]["peak_memory_mb"],
                                 "shared": memory[f"shared_E{n}"]["peak_memory_mb"]}
        rows.append(row)
    result = {
        "machine": machine() if device.type == "cpu" else torch.cuda.get_device_name(device),
        "device": str(device), "torch_threads": torch.get_num_threads(), "frames": args.frames,
        "input_size": list(video.frames.shape[-2:]), "orig_size": [orig_h, orig_w], "repeats": args.repeats,
        "backbone": args.backbone, "text_encoder": args.text_encoder, "decode_batch": args.decode_batch,
        "amp": args.amp,
        "memory_kind": memory["per_expression"]["memory_kind"], **flops, "rows": rows,
    }
    log_result(result)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
    return result


def log_result(result: Dict) -> None:
    lines = [f"machine: {result['machine']} ({result['device']}, {result['torch_threads']} torch threads)",
             f"input {result['frames']} frames of {result['input_size'][0]}x{result['input_size'][1]} (from "
             f"{result['orig_size'][0]}x{result['orig_size'][1]} JPEGs), backbone {result['backbone']}, "
             f"{result['amp'] or 'fp32'}"]
    if "backbone_gflops" in result:
        lines.append(f"GFLOPs: backbone {result['backbone_gflops']:.1f} per window, text + decode "
                     f"{result['expression_gflops']:.1f} per expression")
    for row in result["rows"]:
        lines.append(f"E = {row['E']}: masks identical: {row['masks_identical']} "
                     f"({row['differing_mask_pixels']} differing pixels); peak memory per-expression "
                     f"{row['peak_memory_mb']['per_expression']:.0f} MB, shared {row['peak_memory_mb']['shared']:.0f} "
                     f"MB ({result['memory_kind']})")
        for clock in (row["primary_clock"], *[c for c in CLOCKS if c != row["primary_clock"]]):
            r = row[clock]
            lines.append(f"  [{clock} time] per-expression {r['per_expression_seconds']:.1f} s "
                         f"({r['per_expression_fps']:.3f} frames/s over all expressions), shared "
                         f"{r['shared_seconds']:.1f} s ({r['shared_fps']:.3f} frames/s); s = {r['s']:.3f}, ideal "
                         f"{r['ideal_speedup']:.2f}x, achieved {r['achieved_speedup']:.2f}x = "
                         f"{100 * r['fraction_of_ideal']:.0f}% of ideal")
            lines.append("    per-expression stages: " + ", ".join(
                f"{k} {v:.1f}" for k, v in r["per_expression_stage_seconds"].items()))
            lines.append("    shared stages:         " + ", ".join(
                f"{k} {v:.1f}" for k, v in r["shared_stage_seconds"].items()))
    logger.info("\n".join(lines))


if __name__ == "__main__":
    main()
