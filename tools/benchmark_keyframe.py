"""TFVOS key-frame inference speed (``tools/benchmark.py --keyframe``): the key-frame pass against the whole-video
pass, shared against per-expression, in one run.

A synthetic video of ``--frames`` JPEG frames (see ``tools/benchmark.py``) is segmented for E expressions (each
``--expressions`` value) by the real inference code with a TFVOS model:

- whole-video pass: ``InferenceEngine`` (shared backbone), every frame in one window, as ``inference.py`` without
  ``--key_frames``;
- key-frame pass: the propagation of ``predict.keyframe`` from the middle frame (its mask from the whole-video
  pass), forward and backward one frame at a time, each step a frame and a masked prompt through the model:
  shared (each frame's backbone once for the E expressions, ``--decode_batch`` prompts per call) and
  per-expression (the original: the whole model per expression and step).

Reported per E, on both clocks: seconds per frame per expression of each pass (the key-frame pass counts the
frames it predicts), the key-frame pass's cost relative to the whole-video pass, the shared mode's speed-up over
the per-expression mode against its ideal, and whether the two key-frame modes' masks are identical. The ideal
comes from s, the share of the per-expression key-frame time spent on what the shared mode does once per frame:
the frame's backbone, half of ``encode_video`` there (each step encodes the frame and its prompt, two images of
one size); every expression steps on the same frames here, so the ideal speed-up is 1 / ((1 - s) + s / E). Runs alternate between the
modes (``--repeats``) and the fastest of each is used. Frame loading and PNG writing are left out.
"""
import copy
import json
import logging
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch

from rvos.models import build_model
from rvos.predict.base import Expression, VideoJob
from rvos.predict.engine import InferenceEngine
from rvos.predict.keyframe import Propagator, Track, WholeVideoOutputs, propagation_frames
from rvos.predict.loading import load_video
from rvos.tools.benchmark import (CLOCKS, Clock, StageTimer, SyntheticVideo, captions, machine, peak_memory,
                                  write_frames)

logger = logging.getLogger("benchmark")

MODES = ("whole_video", "keyframe_shared", "keyframe_per_expression")


def whole_video_pass(engine: InferenceEngine, job: VideoJob, video) -> WholeVideoOutputs:
    outputs = WholeVideoOutputs()
    engine.run(job, video, set(range(len(job.expressions))), outputs.add)
    return outputs


def keyframe_tracks(job: VideoJob, video, whole: WholeVideoOutputs, threshold: float) -> List[Track]:
    """One track per expression from the middle frame, its mask from the whole-video pass (the original's
    skipped neighbours: each step costs the same either way)."""
    key = video.num_frames // 2
    forward, backward = propagation_frames(video.num_frames, key, skip_first_neighbour=True)
    return [Track(exp, expression.text, key, forward, backward,
                  (whole.frame(exp, key).probabilities()[0] > threshold).cpu().numpy())
            for exp, expression in enumerate(job.expressions)]


def propagate_all(propagator: Propagator, video, tracks: List[Track], threshold: float) -> Dict[tuple, np.ndarray]:
    masks = {}

    def keep(track, position, output):
        masks[track.exp, position] = (output.probabilities()[0] > threshold).cpu().numpy()

    with torch.inference_mode():
        propagator.run(video, tracks, keep)
    return masks


def run(args) -> Dict:
    """The benchmark for parsed ``tools/benchmark.py`` options (``args.model`` is forced to tfvos)."""
    device = torch.device(args.device if args.device != "cuda" or torch.cuda.is_available() else "cpu")
    primary = "cpu" if device.type == "cpu" else "wall"
    args.model = "tfvos"
    torch.manual_seed(args.seed)
    model, _, _ = build_model(args)
    model.to(device).eval().requires_grad_(False)
    short_side, max_size = min(args.height, args.width), max(args.height, args.width)
    counts = sorted(set(args.expressions))
    clock = Clock(device)
    rows, timer = [], None
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(max(1, args.num_workers)) as pool:
        files = write_frames(Path(tmp), args.frames, args.orig_height or 2 * args.height,
                             args.orig_width or 2 * args.width, args.seed)
        texts = captions(max(counts), args.seed)
        whole_engine = InferenceEngine(model, device, decode_batch=args.decode_batch)
        shared = Propagator(model, device, short_side, max_size, args.threshold, decode_batch=args.decode_batch)
        alone = Propagator(model, device, short_side, max_size, args.threshold, per_expression=True)
        for count in counts:
            job = VideoJob("benchmark", [Expression(str(i), t) for i, t in enumerate(texts[:count])],
                           frame_files=files)
            video = load_video(job, SyntheticVideo(args), short_side, max_size, pool, keep_original=True)
            whole = whole_video_pass(whole_engine, job, video)  # warm-up, and the key frames' masks
            tracks = keyframe_tracks(job, video, whole, args.threshold)
            timer = timer or StageTimer(model, clock)
            runs = {mode: [] for mode in MODES}
            memory = {mode: {} for mode in MODES}
            masks = {}
            for _ in range(args.repeats):
                for mode in MODES:
                    with peak_memory(device, memory[mode]):
                        timer.reset()
                        start = clock.now()
                        if mode == "whole_video":
                            whole_video_pass(whole_engine, job, video)
                        else:
                            masks[mode] = propagate_all(shared if mode == "keyframe_shared" else alone, video,
                                                        tracks, args.threshold)
                        runs[mode].append({"total": clock.since(start), "stages": copy.deepcopy(timer.seconds)})
            best = {mode: min(records, key=lambda r: r["total"][primary]) for mode, records in runs.items()}
            steps = sum(len(t.forward) + len(t.backward) for t in tracks)
            rows.append(summarise(count, video.num_frames, steps, best, masks, memory, primary))
    result = {"machine": machine() if device.type == "cpu" else torch.cuda.get_device_name(device),
              "device": str(device), "torch_threads": torch.get_num_threads(), "frames": args.frames,
              "input_size": [args.height, args.width], "backbone": args.backbone, "repeats": args.repeats,
              "decode_batch": args.decode_batch, "rows": rows}
    log_result(result)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
    return result


def summarise(count: int, frames: int, steps: int, best: Dict, masks: Dict, memory: Dict, primary: str) -> Dict:
    """One row: E, per-frame-per-expression seconds of each pass, ratios, mask identity, peak memory."""
    shared, alone = masks["keyframe_shared"], masks["keyframe_per_expression"]
    differing = sum(int((shared[k] != alone[k]).sum()) for k in shared)
    row = {"E": count, "primary_clock": primary, "keyframe_steps": steps,
           "masks_identical": shared.keys() == alone.keys() and differing == 0, "differing_mask_pixels": differing,
           "peak_memory_mb": {mode: memory[mode]["peak_memory_mb"] for mode in MODES}}
    for clock in CLOCKS:
        per_frame = {"whole_video": best["whole_video"]["total"][clock] / (frames * count),
                     "keyframe_shared": best["keyframe_shared"]["total"][clock] / steps,
                     "keyframe_per_expression": best["keyframe_per_expression"]["total"][clock] / steps}
        alone = best["keyframe_per_expression"]
        s = alone["stages"]["encode_video"][clock] / 2 / alone["total"][clock]
        ideal = 1 / ((1 - s) + s / count)
        speedup = per_frame["keyframe_per_expression"] / per_frame["keyframe_shared"]
        row[clock] = {"seconds_per_frame_per_expression": per_frame,
                      "keyframe_shared_vs_whole_video": per_frame["keyframe_shared"] / per_frame["whole_video"],
                      "keyframe_per_expression_vs_whole_video":
                          per_frame["keyframe_per_expression"] / per_frame["whole_video"],
                      "s": s, "ideal_shared_speedup": ideal, "shared_speedup": speedup,
                      "fraction_of_ideal": speedup / ideal}
    row["stage_seconds"] = {mode: best[mode]["stages"] for mode in MODES}
    return row


def log_result(result: Dict) -> None:
    lines = [f"machine: {result['machine']} ({result['device']}, {result['torch_threads']} torch threads); "
             f"{result['frames']} frames of {result['input_size'][0]}x{result['input_size'][1]}, backbone "
             f"{result['backbone']}, key frame = middle frame"]
    for row in result["rows"]:
        lines.append(f"E = {row['E']}: key-frame masks identical (shared vs per-expression): {row['masks_identical']} "
                     f"({row['differing_mask_pixels']} differing pixels); {row['keyframe_steps']} key-frame steps")
        for clock in (row["primary_clock"], *[c for c in CLOCKS if c != row["primary_clock"]]):
            r = row[clock]
            seconds = r["seconds_per_frame_per_expression"]
            lines.append(f"  [{clock}] s per frame per expression: whole-video {seconds['whole_video']:.3f}, key-frame "
                         f"shared {seconds['keyframe_shared']:.3f} ({r['keyframe_shared_vs_whole_video']:.2f}x), "
                         f"key-frame per-expression {seconds['keyframe_per_expression']:.3f} "
                         f"({r['keyframe_per_expression_vs_whole_video']:.2f}x); shared speed-up "
                         f"{r['shared_speedup']:.2f}x, ideal {r['ideal_shared_speedup']:.2f}x (s = {r['s']:.3f})")
    logger.info("\n".join(lines))
