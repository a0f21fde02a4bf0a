"""Ensemble tool throughput and peak memory: the same recipe on 10 and on 100 synthetic videos with 4 sources.

    python tools/benchmark_ensemble.py --videos 10 100 --json out/bench_ensemble.json

Each video has ``--frames`` frames of ``--height`` x ``--width`` and 2 expressions. Sources: three I23 ``.pth``
stores of random logits (each split into chunks of ``--chunk`` videos, as ``spilt_pth.py`` does) and one PNG tree;
the recipe votes them in consecutive pairs and selects key frames by the product of the scores. The run is
``run_recipe`` in this process (1 worker), timed from the recipe load to the zip; memory is the process's peak RSS
sampled by a thread (memory-mapped store pages included), measured after the synthetic world is written. Each size
runs in a fresh subprocess so that the peaks do not mix.
"""
import argparse
import json
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from rvos.ensemble.recipe import load_recipe  # noqa: E402
from rvos.ensemble.runner import run_recipe  # noqa: E402
from rvos.predict.writers import save_binary_png  # noqa: E402
from rvos.tools.benchmark import current_rss, machine, peak_memory  # noqa: E402

logger = logging.getLogger("benchmark_ensemble")

RECIPE = """\
meta: meta.json
sources:
  a: {type: pth, path: a}
  b: {type: pth, path: b}
  c: {type: pth, path: c}
  d: {type: png, path: d}
rounds:
  - name: voted
    op: vote
    inputs: [a, b, c, d]
    grouping: consecutive_pairs
    min_votes: half
    key_frame: {rule: product, inputs: [a, b, c]}
"""


def write_world(root: Path, videos: int, frames: int, height: int, width: int, chunk: int) -> None:
    """meta.json, chunked stores a/, b/, c/ and the PNG tree d/ of ``videos`` videos under ``root``."""
    rng = np.random.default_rng(0)
    names = [f"{i:05d}" for i in range(videos)]
    meta = {"videos": {v: {"expressions": {"0": {"exp": "a"}, "1": {"exp": "b"}},
                           "frames": [f"{5 * t:05d}" for t in range(frames)]} for v in names}}
    (root / "meta.json").write_text(json.dumps(meta))
    for store in "abc":
        (root / store).mkdir()
        for start in range(0, videos, chunk):
            part = {v: {e: {"mask_logits": torch.from_numpy(rng.normal(0, 2, (frames, height, width))
                                                             .astype(np.float32)),
                            "class_info": rng.random(frames).astype(np.float32).tolist()} for e in ("0", "1")}
                    for v in names[start:start + chunk]}
            torch.save(part, root / store / f"{store}{start // chunk}.pth")
    for v in names:
        for e in ("0", "1"):
            folder = root / "d" / v / e
            folder.mkdir(parents=True)
            for frame in meta["videos"][v]["frames"]:
                save_binary_png(folder / f"{frame}.png", rng.random((height, width)) > 0.5)
    (root / "recipe.yaml").write_text(RECIPE)


def measure(args) -> dict:
    """One size, in this process."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_world(root, args.single, args.frames, args.height, args.width, args.chunk)
        result = {"videos": args.single, "rss_before_mb": current_rss() / 2 ** 20}
        with peak_memory(torch.device("cpu"), result):
            start = time.perf_counter()
            report = run_recipe(load_recipe(root / "recipe.yaml", output=root / "out"), progress=False)
            result["seconds"] = time.perf_counter() - start
        if report.failures:
            raise RuntimeError(f"the benchmark run failed: {report.failures}")
    result["videos_per_s"] = args.single / result["seconds"]
    result["frames_per_s"] = args.single * args.frames / result["seconds"]
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--height", type=int, default=120)
    parser.add_argument("--width", type=int, default=160)
    parser.add_argument("--chunk", type=int, default=10, help="videos per .pth chunk")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--single", type=int, default=None, help=argparse.SUPPRESS)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.single is not None:
        sys.stdout.write(json.dumps(measure(args)) + "\n")
        return 0
    results = []
    for videos in args.videos:
        command = [sys.executable, __file__, "--single", str(videos), "--frames", str(args.frames), "--height",
                   str(args.height), "--width", str(args.width), "--chunk", str(args.chunk)]
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        results.append(json.loads(out.strip().splitlines()[-1]))
        logger.info("%(videos)d videos: %(seconds).2f s, %(videos_per_s).1f videos/s, %(frames_per_s).0f frames/s, "
                    "peak RSS %(peak_memory_mb).0f MB "
                    "(%(rss_before_mb).0f MB before the run)", results[-1])
    payload = {"machine": machine(), "frames": args.frames, "size": [args.height, args.width], "chunk": args.chunk,
               "results": results}
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
