"""How long inference takes to stop on a preemption signal, against the video's remaining work, in one run.

    python tools/benchmark_stop_latency.py --config configs/referformer/resnet50_ytvos.yaml --frames 12 \
        --sub_video_len 4 --short_side 240 --json out/stop_latency.json

One synthetic MeViS ``valid_u`` video (the generator's expressions), random weights of ``--config`` with the tiny
text encoder of ``tools/make_tiny_text_encoder.py``, ``inference.py`` in a fresh subprocess per run, in shared and
in per-expression mode. For each mode an uninterrupted run gives ``rest_s``, the time from its first PNG to its exit,
and a run sent SIGTERM when its first PNG appears gives ``stop_s``, the time from the signal to its exit (exit code
124, the expression in flight committed). Both clocks start at the same event, after the model is built and the
frames are loaded, so ``stop_s / rest_s`` is the share of the video's remaining work that a signal still costs
(a stop at video granularity costs all of it: 1).
"""
import argparse
import json
import logging
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rvos.datasets.synthetic import make_dataset  # noqa: E402
from rvos.predict.benchmarks.ytvos import read_meta_videos  # noqa: E402
from rvos.tools.benchmark import machine  # noqa: E402
from rvos.util.preemption import REQUEUE_EXIT_CODE  # noqa: E402

logger = logging.getLogger("benchmark_stop_latency")

REPO_ROOT = Path(__file__).resolve().parents[1]
MODES = {"shared": [], "per_expression": ["--per_expression"]}
POLL_SECONDS = 0.005


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="model config (random weights)")
    parser.add_argument("--frames", type=int, default=12, help="frames of the video")
    parser.add_argument("--sub_video_len", type=int, default=4, help="sub-clip length (the video runs in frames / sub_video_len windows)")
    parser.add_argument("--short_side", type=int, default=240, help="--test_short_side of inference.py")
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    parser.add_argument("--timeout", type=float, default=1800, help="seconds one inference run may take")
    parser.add_argument("--json", type=Path, help="write the results here")
    return parser.parse_args(argv)


def first_png(folder: Path) -> bool:
    return next(folder.rglob("*.png"), None) is not None


def timed_run(command: List[str], out: Path, send_signal: bool, timeout: float) -> Dict:
    """Run ``command``; from the moment a PNG appears under ``out``, time the rest (sending SIGTERM then when
    ``send_signal``). Returns the exit code and the seconds from that moment to the exit."""
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + timeout
    try:
        while not first_png(out):
            if process.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"inference exited ({process.returncode}) or timed out before its first mask: "
                                   f"{process.communicate()[1][-3000:] if process.poll() is not None else ''}")
            time.sleep(POLL_SECONDS)
        started = time.perf_counter()
        if send_signal:
            process.send_signal(signal.SIGTERM)
        stderr = process.communicate(timeout=max(1.0, deadline - time.time()))[1]
        seconds = time.perf_counter() - started
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    if process.returncode not in (0, REQUEUE_EXIT_CODE):
        raise RuntimeError(f"inference failed with exit code {process.returncode}: {stderr[-3000:]}")
    return {"exit_code": process.returncode, "seconds": seconds}


def committed_expressions(annotations: Path) -> int:
    return sum(1 for video in annotations.iterdir() for exp in video.iterdir() if not exp.name.startswith("."))


def run(args: argparse.Namespace) -> Dict:
    with tempfile.TemporaryDirectory(prefix="stop_latency_") as folder:
        return run_in(args, Path(folder))


def run_in(args: argparse.Namespace, work: Path) -> Dict:
    text_encoder = work / "text_encoder"
    subprocess.run([sys.executable, str(REPO_ROOT / "tools" / "make_tiny_text_encoder.py"), "--out", str(text_encoder)],
                   check=True, cwd=REPO_ROOT, capture_output=True)
    root = make_dataset("mevis", work / "mevis", seed=0, num_frames=args.frames, min_frames=args.frames,
                        num_valid_u_videos=1, num_valid_videos=1, num_train_videos=1, height=args.height,
                        width=args.width)
    meta = read_meta_videos(root / "valid_u" / "meta_expressions.json")
    expressions = sum(len(entry["expressions"]) for entry in meta.values())
    rows = []
    for mode in args.modes:
        row = {"mode": mode, "expressions": expressions}
        for kind, send_signal in (("rest", False), ("stop", True)):
            out = work / f"{mode}_{kind}"
            command = [sys.executable, str(REPO_ROOT / "inference.py"), "--config", args.config,
                       "--allow_random_weights", "--text_encoder", str(text_encoder), "--device", "cpu",
                       "--dataset_file", "mevis", "--mevis_path", str(root), "--split", "valid_u", "--sub_video_len",
                       str(args.sub_video_len), "--test_short_side", str(args.short_side), "--num_workers", "1",
                       "--output_dir", str(out), *MODES[mode]]
            result = timed_run(command, out, send_signal, args.timeout)
            row[f"{kind}_s"] = round(result["seconds"], 3)
            row[f"{kind}_exit_code"] = result["exit_code"]
            row[f"{kind}_committed"] = committed_expressions(out / "valid_u" / "Annotations")
            logger.info("%s %s: %.2f s, exit %d", mode, kind, result["seconds"], result["exit_code"])
        row["stop_over_rest"] = round(row["stop_s"] / row["rest_s"], 3)
        rows.append(row)
    return {"machine": machine(), "config": args.config, "frames": args.frames, "sub_video_len": args.sub_video_len,
            "short_side": args.short_side, "rows": rows}


def main(argv=None) -> Dict:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%X")
    args = parse_args(argv)
    result = run(args)
    header = "| mode | E | rest of the video (s) | signal to exit (s) | ratio | committed after the signal |"
    lines = [header, "|" + " --- |" * 6]
    lines += [f"| {r['mode']} | {r['expressions']} | {r['rest_s']:.2f} | {r['stop_s']:.2f} | {r['stop_over_rest']:.2f} "
              f"| {r['stop_committed']} of {r['expressions']} |" for r in result["rows"]]
    logger.info("%s, %s:\n%s", result["machine"], args.config, "\n".join(lines))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
