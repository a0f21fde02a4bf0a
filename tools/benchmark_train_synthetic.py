"""How well the tiny model learns the synthetic Ref-YouTube-VOS in a fixed CPU time budget.

1. writes the synthetic Ref-YouTube-VOS layout (``datasets.synthetic``; held-out ground truth for ``valid``) and
   the tiny text encoder under ``--work_dir``;
2. trains ``--config`` (default: the tiny model) with ``main.py``'s trainer for ``--minutes`` of wall clock
   (constant learning rate; it stops at the first optimiser step after the budget, with a checkpoint);
3. predicts the ``valid`` split with ``inference.py`` (the frames resized as in training);
4. scores every expression with J&F (``evaluation.metrics``, the davis2017 J and F used by
   ``evaluation.davis``: per expression the mean over its frames, J&F = (J + F) / 2), grouped by the
   expression kinds the generator records in ``synthetic_meta.json`` (``appearance``, ``motion``, ``position``;
   and ``needs_motion``), for the trained model and two baselines: an empty and a full-frame mask.

    python tools/benchmark_train_synthetic.py --minutes 30 --work_dir out/bench_train
    python tools/benchmark_train_synthetic.py --minutes 2 --num_videos 6 --num_valid_videos 3 --work_dir /tmp/b

Results (with the machine, sizes and timings) go to ``<work_dir>/results.json``; the table is logged.
A ``--work_dir`` that already holds a training run is refused (pick a new one).
"""
import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch
from PIL import Image

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import rvos.main as trainer  # noqa: E402
from rvos import opts  # noqa: E402
from rvos.evaluation.report import format_table, save_json  # noqa: E402
from rvos.datasets.synthetic import HELD_OUT_DIR, SIDECAR_NAME, make_dataset  # noqa: E402
from rvos.models.checkpoint import read_checkpoint  # noqa: E402
from rvos.util.logger import setup_logging  # noqa: E402
from rvos.evaluation.metrics import region_and_boundary  # noqa: E402

logger = logging.getLogger("benchmark_train_synthetic")

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY_CONFIG = REPO_ROOT / "configs" / "tiny" / "referformer_tiny_synthetic.yaml"
SPLIT = "valid"
METHODS = ("model", "empty", "full")
COLUMNS = ("J&F", "J", "F")
NEVER = 10 ** 6  # epochs / LR milestone far beyond any budget: the time budget ends training


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0, help="training budget (wall clock)")
    parser.add_argument("--work_dir", type=Path, default=Path("output/benchmark_train_synthetic"))
    parser.add_argument("--config", type=Path, default=TINY_CONFIG)
    parser.add_argument("--seed", type=int, default=0, help="synthetic world and training seed")
    parser.add_argument("--num_videos", type=int, default=24, help="synthetic train videos")
    parser.add_argument("--num_valid_videos", type=int, default=8, help="synthetic valid videos (scored)")
    parser.add_argument("--text_encoder", type=Path, default=None,
                        help="tiny text encoder folder (default: made under --work_dir)")
    parser.add_argument("--train_args", nargs=argparse.REMAINDER, default=[],
                        help="extra main.py options, e.g. --train_args --batch_size 1 --num_workers 0")
    return parser


def prepare_world(args) -> Dict[str, Path]:
    data = make_dataset("ytvos", args.work_dir / "data" / "ytvos", seed=args.seed, num_videos=args.num_videos,
                        num_valid_videos=args.num_valid_videos, num_test_videos=1)
    text_encoder = args.text_encoder or args.work_dir / "tiny_text_encoder"
    if not (Path(text_encoder) / "config.json").is_file():
        subprocess.run([sys.executable, str(REPO_ROOT / "tools" / "make_tiny_text_encoder.py"), "--out",
                        str(text_encoder)], check=True)
    return {"ytvos": data, "text_encoder": Path(text_encoder)}


def train(args, world: Dict[str, Path]) -> Dict[str, object]:
    """Train in this process until the budget is over; returns timing and the last epoch record."""
    out = args.work_dir / "train"
    options = opts.parse_args(["--config", str(args.config), "--text_encoder", str(world["text_encoder"]),
                               "--ytvos_path", str(world["ytvos"]), "--output_dir", str(out), "--device", "cpu",
                               "--seed", str(args.seed), "--epochs", str(NEVER), "--lr_drop", str(NEVER),
                               *args.train_args])
    started = time.time()
    trainer.launch(options, stop_at=started + args.minutes * 60)
    elapsed = time.time() - started
    log_lines = (out / "log.txt").read_text().splitlines() if (out / "log.txt").is_file() else []
    ckpt = read_checkpoint(out / "checkpoint.pth")
    return {"seconds": elapsed, "epochs_finished": len(log_lines), "stopped_at": {"epoch": ckpt["epoch"],
            "iteration": ckpt["iteration"], "epoch_finished": ckpt["epoch_finished"]},
            "last_epoch": json.loads(log_lines[-1]) if log_lines else None, "checkpoint": str(out / "checkpoint.pth"),
            "max_size": options.max_size}


def predict(args, world: Dict[str, Path], checkpoint: str, max_size: int) -> Dict[str, object]:
    """inference.py over the valid split; frames resized as in training (long side max_size)."""
    out = args.work_dir / "predictions"
    cmd = [sys.executable, str(REPO_ROOT / "inference.py"), "--config", str(args.config), "--dataset_file", "ytvos",
           "--ytvos_path", str(world["ytvos"]), "--split", SPLIT, "--resume", checkpoint, "--output_dir", str(out),
           "--text_encoder", str(world["text_encoder"]), "--device", "cpu", "--no-zip", "--num_workers", "0",
           "--test_short_side", str(max_size), "--test_max_size", str(max_size)]
    started = time.time()
    subprocess.run(cmd, check=True, cwd=REPO_ROOT)
    return {"seconds": time.time() - started, "folder": out / SPLIT}


def read_binary(path: Path) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: mask not found")
    with Image.open(path) as image:
        return np.array(image.convert("L")) > 0


def score(world: Dict[str, Path], prediction_dir: Path) -> Dict[str, Dict[str, Dict[str, float]]]:
    """{method: {group: {J&F, J, F, n}}} over the valid expressions; groups: all, each kind, needs_motion."""
    sidecar = json.loads((world["ytvos"] / SIDECAR_NAME).read_text())
    frames_of = {video: entry["frames"] for video, entry in sidecar["videos"][SPLIT].items()}
    gt_root = world["ytvos"] / HELD_OUT_DIR / SPLIT / "Annotations"
    per_group: Dict[str, Dict[str, List[tuple]]] = {m: defaultdict(list) for m in METHODS}
    for expression in (e for e in sidecar["expressions"] if e["split"] == SPLIT):
        video, exp_id = expression["video"], expression["exp_id"]
        gt = np.stack([read_binary(gt_root / video / exp_id / f"{f}.png") for f in frames_of[video]])
        predictions = {
            "model": np.stack([read_binary(prediction_dir / video / exp_id / f"{f}.png") for f in frames_of[video]]),
            "empty": np.zeros_like(gt),
            "full": np.ones_like(gt),
        }
        groups = ["all", f"kind={expression['kind']}", f"needs_motion={expression['needs_motion']}"]
        for method, prediction in predictions.items():
            jaccard, boundary = region_and_boundary(gt, prediction)
            for group in groups:
                per_group[method][group].append((float(jaccard.mean()), float(boundary.mean())))
    results = {}
    for method, groups in per_group.items():
        results[method] = {}
        for group, scores in sorted(groups.items()):
            j, f = np.mean([s[0] for s in scores]), np.mean([s[1] for s in scores])
            results[method][group] = {"J&F": float((j + f) / 2), "J": float(j), "F": float(f), "n": len(scores)}
    return results


def machine() -> Dict[str, object]:
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                 if line.startswith("model name")]
        cpu = names[0] if names else cpu
    return {"cpu": cpu, "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
            "platform": platform.platform(), "torch": torch.__version__}


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    world = prepare_world(args)
    training = train(args, world)
    setup_logging(args.work_dir, log_name="benchmark.log")
    inference = predict(args, world, training["checkpoint"], training["max_size"])
    started = time.time()
    results = score(world, inference["folder"])
    report = {"machine_at_start_of_scoring": machine(), "budget_minutes": args.minutes, "config": str(args.config),
              "seed": args.seed, "num_videos": args.num_videos, "num_valid_videos": args.num_valid_videos,
              "training": training, "inference_seconds": inference["seconds"],
              "scoring_seconds": time.time() - started, "results": results}
    save_json(report, args.work_dir / "results.json")
    for group in results["model"]:
        rows = {method: results[method][group] for method in METHODS}
        logger.info("\n%s", format_table(f"{group} ({results['model'][group]['n']} expressions)", rows, COLUMNS))
    logger.info("trained %.1f min (%d epochs finished, stopped at %s), inference %.1f s; results in %s",
                training["seconds"] / 60, training["epochs_finished"], training["stopped_at"],
                inference["seconds"], args.work_dir / "results.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
