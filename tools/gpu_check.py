"""The GPU check: everything a session lent a GPU should run, unattended, in under 10 minutes.

``scripts/gpu_check.sh`` sets up and runs this (``scripts/gpu_check_prepare.sh``, run beforehand on the machine
that sends the work, gathers what a bare GPU machine lacks). Steps, each in its own process with a time limit
and timed; a step that fails or runs out of time is recorded and the next one runs:

1. ``environment``   Python, torch / CUDA, the GPU and its compute capability, CPU cores, package versions;
2. ``build``         the MultiScaleDeformableAttention extension, in place, for this GPU's architecture;
3. ``op_check``      ``python -m rvos.models.ops.check``;
4. ``op_tests``      the CUDA tests of tests/test_msdeform.py: parity with the PyTorch path (float64, float32,
                     fp16 / bf16 autocast), float64 gradcheck, every batch size against ``im2col_step``;
5. ``op_benchmark``  forward + backward at Video-Swin-B encoder sizes (5 frames of 360x640: 4 levels, 8 heads,
                     4 points), CUDA kernels against the PyTorch path, fp32 and bf16 (``tools/benchmark_ops.py``);
6. ``inference``     shared against per-expression inference, ReferFormer Video-Swin-B (random weights), 5 frames
                     of 360x640, E = 4 and 16 with identical masks, fp32 and bf16 (``tools/benchmark.py``);
7. ``training``      a few bf16 iterations of the tiny recipe and of the Video-Swin-T recipe on the synthetic world
                     at 360x640, time per iteration and peak memory (``tools/benchmark_train_steps.py``);
8. ``build_tests``   tests/test_ops_build.py (it compiles the extension twice more), only when time is left.

Writes ``<out>/gpu_check.json`` (everything), ``<out>/gpu_check_rows.md`` (the rows for docs/BENCHMARKS.md) and
``<out>/gpu_check.log``, and appends the rows, each naming the device, to docs/BENCHMARKS.md (``--no-append``:
not). Without a CUDA GPU it exits at once with code 2. ``--append-from RUN.json`` appends the rows of a run made
elsewhere (the JSON fetched from the GPU machine) without a GPU.

    bash scripts/gpu_check.sh                     # on the GPU machine
    python tools/gpu_check.py --append-from gpu_check.json
"""
import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

REPO_ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):
    sys.path.insert(0, str(REPO_ROOT))

NO_GPU_EXIT = 2
DEFAULT_BUDGET = 540  # seconds for all steps: the whole run stays under 10 minutes
RESERVE = 15  # seconds kept for writing the results
TAIL = 4000  # characters of a step's output kept in the JSON
PACKAGES = ("torch", "torchvision", "transformers", "tokenizers", "timm", "numpy", "pycocotools", "opencv-python-headless",
            "pillow", "av", "h5py", "scipy")
SECTION = "## GPU check (`scripts/gpu_check.sh`)"
TABLE_HEADER = ("| date | device | torch / CUDA | measurement | fp32 | bf16 |", "|---|---|---|---|---|---|")
SWIN_B_INFERENCE = ["--backbone", "video_swin_b_p4w7", "--with_box_refine", "--binary", "--frames", "5",
                    "--height", "360", "--width", "640", "--expressions", "16", "4", "--repeats", "2",
                    "--num_workers", "4", "--no_flops"]
TRAINING_RECIPES = {"tiny": "configs/tiny/referformer_tiny_synthetic.yaml",
                    "video_swin_t": "configs/referformer/video_swin_t_p4w7_ytvos.yaml"}
TRAINING_OPTIONS = {"tiny": ["--max_size", "640", "--batch_size", "2", "--num_workers", "4"],
                    "video_swin_t": ["--max_size", "640", "--batch_size", "1", "--num_workers", "4"]}


@dataclass(frozen=True)
class Step:
    """``name``: what it checks; ``limit``: its time limit (s); ``needs``: the least time worth starting it with."""

    name: str
    limit: int
    needs: int


STEPS = (Step("environment", 60, 5), Step("build", 240, 60), Step("op_check", 120, 20), Step("op_tests", 150, 30),
         Step("op_benchmark", 120, 20), Step("inference", 200, 60), Step("training", 200, 60),
         Step("build_tests", 240, 200))


# ------------------------------------------------------------------------------------------- running steps

def run_logged(command: Sequence[str], timeout: float, env: Dict[str, str], log: Callable[[str], None],
               cwd: Path = REPO_ROOT) -> Dict:
    """Run ``command``, echoing its output through ``log``; stop it after ``timeout`` seconds.
    Returns ``{"returncode" (None on timeout), "seconds", "tail"}``."""
    start = time.monotonic()
    lines: List[str] = []
    with subprocess.Popen(list(command), cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, errors="replace", start_new_session=True) as process:

        def pump():
            for line in process.stdout:
                lines.append(line)
                log(line.rstrip("\n"))

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        try:
            returncode = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # the step's whole process group (loader workers, compilers)
            process.wait()
            returncode = None
        reader.join(timeout=5)
    return {"returncode": returncode, "seconds": time.monotonic() - start, "tail": "".join(lines)[-TAIL:]}


def step_command(step: str, work: Path) -> List[str]:
    """The command of a step (its own process)."""
    python = sys.executable
    if step == "build":
        return [python, "setup.py", "-q", "build_ext", "--inplace"]
    if step == "op_check":
        return [python, "-m", "rvos.models.ops.check"]
    if step == "op_tests":
        return [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_msdeform.py", "-k", "cuda"]
    if step == "build_tests":
        return [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_ops_build.py"]
    return [python, str(Path(__file__).resolve()), "--step", step, "--work", str(work)]


def step_environment(work: Path) -> Dict:
    import torch

    index = torch.cuda.current_device()
    major, minor = torch.cuda.get_device_capability(index)
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "device_name": torch.cuda.get_device_name(index), "capability": f"{major}.{minor}",
            "gpu_memory_gib": torch.cuda.get_device_properties(index).total_memory / 2 ** 30,
            "cpu_cores": os.cpu_count(), "nvcc": shutil.which("nvcc"), "packages": versions}


def step_op_benchmark(work: Path, device: str = "cuda", shape=None, repeats: int = 10) -> Dict:
    from rvos.tools.benchmark_ops import OpShape, benchmark_op

    return benchmark_op(shape or OpShape(), device=device, warmup=3, repeats=repeats)


def text_encoder_folder(work: Path, architecture: str) -> Path:
    """A text-encoder folder: the tiny tokenizer (tools/make_tiny_text_encoder.py) with the config of
    ``architecture`` (``roberta-base``: the real model's size, random weights; ``tiny``: its own config)."""
    from rvos.models.text_encoder import BUILTIN_CONFIG_DIR
    from rvos.tools.make_tiny_text_encoder import write_tiny_text_encoder

    tiny = work / "text_encoder_tiny"
    if not (tiny / "config.json").is_file():
        write_tiny_text_encoder(tiny)
    if architecture == "tiny":
        return tiny
    folder = work / f"text_encoder_{architecture}"
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(tiny / name, folder / name)
    shutil.copy(BUILTIN_CONFIG_DIR / f"{architecture}.json", folder / "config.json")
    return folder


def step_inference(work: Path, device: str = "cuda", options: Sequence[str] = SWIN_B_INFERENCE,
                   text_encoder: str = "roberta-base") -> Dict:
    """tools/benchmark.py in fp32 and under bf16 autocast: ``{"fp32": result, "bf16": result}``."""
    from rvos.tools.benchmark import main as benchmark

    folder = text_encoder_folder(work, text_encoder)
    return {dtype: benchmark([*options, *amp, "--text_encoder", str(folder), "--device", device])
            for dtype, amp in (("fp32", []), ("bf16", ["--amp", "bf16"]))}


def synthetic_ytvos(work: Path, height: int = 360, width: int = 640) -> Path:
    """A small synthetic Ref-YouTube-VOS (4 training videos of 8 frames) at ``height`` x ``width``: at 360x640 the
    training resize works at real sizes."""
    from rvos.datasets.synthetic import make_dataset

    root = work / f"ytvos_{height}x{width}"
    if not root.is_dir():
        make_dataset("ytvos", root, seed=0, num_videos=4, num_valid_videos=1, num_test_videos=1, num_frames=8,
                     min_frames=8, height=height, width=width)
    return root


def step_training(work: Path, device: str = "cuda", recipes: Dict[str, str] = None,
                  options: Dict[str, Sequence[str]] = None, amp: Optional[str] = "bf16", iterations: int = 12,
                  warmup: int = 3, frame_size=(360, 640)) -> Dict:
    """tools/benchmark_train_steps.py for each recipe (name -> config): ``{name: result}``."""
    from rvos.tools.benchmark_train_steps import main as train_steps

    recipes = recipes or TRAINING_RECIPES
    options = options or TRAINING_OPTIONS
    data = synthetic_ytvos(work, *frame_size)
    runs = {}
    for name, config in recipes.items():
        folder = text_encoder_folder(work, "tiny" if name == "tiny" else "roberta-base")
        runs[name] = train_steps(["--config", str(REPO_ROOT / config), "--text_encoder", str(folder),
                                  "--ytvos_path", str(data), "--device", device, "--iterations", str(iterations),
                                  "--warmup", str(warmup), *(["--amp", amp] if amp else []), *options[name]])
    return runs


IN_PROCESS_STEPS = {"environment": step_environment, "op_benchmark": step_op_benchmark, "inference": step_inference,
                    "training": step_training}


def run_step_here(step: str, work: Path) -> int:
    """``--step``: run one in-process step and write its result to ``<work>/<step>.json``."""
    result = IN_PROCESS_STEPS[step](work)
    (work / f"{step}.json").write_text(json.dumps(result, indent=1, default=str))
    return 0


def pytest_counts(tail: str) -> Dict[str, int]:
    """{'passed': n, 'failed': n, ...} from pytest's last summary line."""
    return {word: int(count) for count, word in re.findall(r"(\d+) (passed|failed|skipped|errors?|deselected)", tail)}


def run_checks(work: Path, budget: float, log: Callable[[str], None], steps: Sequence[Step] = STEPS) -> Dict:
    """Run ``steps`` within ``budget`` seconds; returns ``{step: record}`` with status ok / failed / timeout /
    skipped, seconds, the output's tail and, for in-process steps, their ``result``."""
    deadline = time.monotonic() + budget
    env = dict(os.environ, PYTHONUNBUFFERED="1", MAX_JOBS=os.environ.get("MAX_JOBS", str(os.cpu_count() or 1)),
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))
    records = {}
    for step in steps:
        left = deadline - time.monotonic() - RESERVE
        if left < step.needs:
            records[step.name] = {"status": "skipped", "reason": f"{left:.0f} s left of the budget, it needs "
                                                                 f"{step.needs} s"}
            log(f"[gpu_check] {step.name}: skipped ({records[step.name]['reason']})")
            continue
        log(f"[gpu_check] {step.name}: started (limit {min(step.limit, left):.0f} s)")
        record = run_logged(step_command(step.name, work), min(step.limit, left), env,
                            lambda line, name=step.name: log(f"  {name}| {line}"))
        record["status"] = ("timeout" if record["returncode"] is None else "ok" if record["returncode"] == 0
                            else "failed")
        result_file = work / f"{step.name}.json"
        if step.name in IN_PROCESS_STEPS and result_file.is_file():
            record["result"] = json.loads(result_file.read_text())
        if step.name.endswith("tests"):
            record["pytest"] = pytest_counts(record["tail"])
        records[step.name] = record
        log(f"[gpu_check] {step.name}: {record['status']} in {record['seconds']:.1f} s")
    return records


# ------------------------------------------------------------------------------------------- results

def _op_cell(result: Dict, dtype: str) -> str:
    rows = {row["impl"]: row for row in result["rows"] if row["dtype"] == dtype}
    if "cuda" not in rows:
        return f"PyTorch path {rows['pytorch']['median_ms']:.1f} ms (no CUDA kernels)" if "pytorch" in rows else "-"
    cuda = rows["cuda"]
    text = f"{cuda['median_ms']:.2f} ms"
    if "speedup_over_pytorch" in cuda:
        text += (f" vs PyTorch path {rows['pytorch']['median_ms']:.2f} ms (**{cuda['speedup_over_pytorch']:.1f}x**), "
                 f"max rel. diff {cuda['max_relative_difference']:.0e}")
    return text


def _inference_cell(run: Dict, expressions: int) -> str:
    row = next((r for r in run["rows"] if r["E"] == expressions), None)
    if row is None:
        return "-"
    wall = row["wall"]
    return (f"per-expression {wall['per_expression_seconds']:.2f} s, shared {wall['shared_seconds']:.2f} s "
            f"(**{wall['achieved_speedup']:.2f}x**, {100 * wall['fraction_of_ideal']:.0f}% of ideal "
            f"{wall['ideal_speedup']:.2f}x); masks identical: {'yes' if row['masks_identical'] else 'NO'} "
            f"({row['differing_mask_pixels']} px); peak {row['peak_memory_mb']['shared']:.0f} MB")


def _training_cell(run: Dict) -> str:
    memory = f", peak {run['peak_memory_mib']:.0f} MiB" if run.get("peak_memory_mib") is not None else ""
    return (f"{run['seconds_per_iteration']:.3f} s/iteration (batch {run['batch_size']} x {run['num_frames']} frames, "
            f"median of {run['iterations'] - run['warmup']}){memory}, loss {run['loss']:.2f}")


def _status_cell(record: Optional[Dict]) -> str:
    if record is None:
        return "not run"
    if record["status"] == "skipped":
        return f"skipped ({record['reason']})"
    text = f"{record['status']} ({record['seconds']:.0f} s)"
    counts = record.get("pytest")
    if counts:
        text += ", " + ", ".join(f"{count} {word}" for word, count in counts.items())
    return text


def markdown_rows(run: Dict) -> List[str]:
    """The docs/BENCHMARKS.md table rows of one ``gpu_check.json``, each naming the device."""
    environment = run["steps"].get("environment", {}).get("result", {})
    device = environment.get("device_name", run.get("device_name", "unknown device"))
    prefix = f"| {run['date']} | {device} | {environment.get('torch', '?')} / {environment.get('cuda', '?')} |"
    steps = run["steps"]
    rows = [f"{prefix} checks: op build {_status_cell(steps.get('build'))}; ops.check "
            f"{_status_cell(steps.get('op_check'))}; test_msdeform CUDA tests {_status_cell(steps.get('op_tests'))}; "
            f"test_ops_build {_status_cell(steps.get('build_tests'))} | - | - |"]
    op = steps.get("op_benchmark", {}).get("result")
    if op:
        shape = op["shape"]
        rows.append(f"{prefix} MSDeformAttn forward+backward, {shape['frames']} x {shape['height']}x{shape['width']} "
                    f"(Lq {op['queries_per_frame']}, {shape['levels']} levels, {shape['heads']} heads, "
                    f"{shape['points']} points) | {_op_cell(op, 'float32')} | {_op_cell(op, 'bfloat16')} |")
    inference = steps.get("inference", {}).get("result")
    if inference:
        any_run = next(iter(inference.values()))
        size = f"{any_run['frames']} x {any_run['input_size'][0]}x{any_run['input_size'][1]}"
        for expressions in sorted({row["E"] for run in inference.values() for row in run["rows"]}):
            cells = [_inference_cell(inference[dtype], expressions) if dtype in inference else "-"
                     for dtype in ("fp32", "bf16")]
            rows.append(f"{prefix} inference {any_run['backbone']}, {size}, E = {expressions} | {cells[0]} | "
                        f"{cells[1]} |")
    training = steps.get("training", {}).get("result")
    if training:
        for name, result in training.items():
            cells = [_training_cell(result) if (result["amp"] or "fp32") == dtype else "-" for dtype in ("fp32", "bf16")]
            rows.append(f"{prefix} training {name} ({Path(result['config']).name}) | {cells[0]} | {cells[1]} |")
    return rows


def append_rows(markdown: Path, rows: Sequence[str]) -> None:
    """Add ``rows`` at the end of the GPU-check table of ``markdown`` (the section is created when missing)."""
    text = markdown.read_text(encoding="utf-8") if markdown.is_file() else "# Benchmarks\n"
    lines = text.rstrip("\n").split("\n")
    if SECTION not in lines:
        lines += ["", SECTION, "", "Rows appended by `tools/gpu_check.py`, one run per date and device (see its "
                  "docstring for what each step runs).", "", *TABLE_HEADER]
    start = lines.index(SECTION)
    header = next(i for i in range(start, len(lines)) if lines[i] == TABLE_HEADER[0])
    end = header + 2
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    lines[end:end] = list(rows)
    markdown.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_results(run: Dict, out: Path, markdown: Optional[Path]) -> List[str]:
    """``<out>/gpu_check.json`` and ``<out>/gpu_check_rows.md``; the rows also go to ``markdown`` when given."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.json").write_text(json.dumps(run, indent=1, default=str))
    rows = markdown_rows(run)
    (out / "gpu_check_rows.md").write_text("\n".join([SECTION, "", *TABLE_HEADER, *rows]) + "\n")
    if markdown is not None:
        append_rows(markdown, rows)
    return rows


# ------------------------------------------------------------------------------------------- main

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or REPO_ROOT / "output" / "gpu_check"),
                        help="where the JSON, the rows and the log go (default: $OUT, else output/gpu_check)")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    parser.add_argument("--budget", type=float, default=DEFAULT_BUDGET, help="seconds for all the steps")
    parser.add_argument("--steps", nargs="+", default=[step.name for step in STEPS],
                        choices=[step.name for step in STEPS], help="run only these steps")
    parser.add_argument("--markdown", type=Path, default=REPO_ROOT / "docs" / "BENCHMARKS.md")
    parser.add_argument("--no-append", dest="append", action="store_false", help="leave --markdown unchanged")
    parser.add_argument("--append-from", type=Path, default=None,
                        help="append the rows of this gpu_check.json to --markdown and exit (no GPU needed)")
    parser.add_argument("--step", choices=sorted(IN_PROCESS_STEPS), help=argparse.SUPPRESS)
    return parser


def gpu_missing_reason() -> Optional[str]:
    """Why no CUDA GPU can be used here (None when one can)."""
    import torch

    if torch.cuda.is_available():
        return None
    return (f"no CUDA GPU visible to torch {torch.__version__} (CUDA build {torch.version.cuda or 'none'}); "
            "the GPU check needs one: run scripts/gpu_check.sh on a machine with an NVIDIA GPU")


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.step:
        return run_step_here(args.step, args.work)
    if args.append_from:
        rows = markdown_rows(json.loads(args.append_from.read_text()))
        append_rows(args.markdown, rows)
        print("\n".join(rows))
        return 0
    reason = gpu_missing_reason()
    if reason is not None:
        print(f"gpu_check: {reason}", file=sys.stderr)
        return NO_GPU_EXIT
    args.out.mkdir(parents=True, exist_ok=True)
    log_file = open(args.out / "gpu_check.log", "w", encoding="utf-8")

    def log(line: str) -> None:
        print(line, flush=True)
        log_file.write(line + "\n")
        log_file.flush()

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as scratch:
        work = args.work or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        steps = [step for step in STEPS if step.name in args.steps]
        records = run_checks(work, args.budget, log, steps)
    run = {"date": datetime.date.today().isoformat(), "seconds": time.monotonic() - started, "steps": records}
    rows = write_results(run, args.out, args.markdown if args.append else None)
    log("\n".join(rows))
    log(f"[gpu_check] done in {run['seconds']:.0f} s: {args.out / 'gpu_check.json'}")
    log_file.close()
    return 0 if all(record["status"] in ("ok", "skipped") for record in records.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
