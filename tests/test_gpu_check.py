"""The GPU check's CPU-side pieces: the exit without a GPU, its measurement steps run on the CPU at tiny sizes, the
step runner (time limits, budget), and the JSON / docs/BENCHMARKS.md rows it writes from real step results."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rvos.tools import gpu_check
from rvos.tools.benchmark_ops import OpShape

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY = "configs/tiny/referformer_tiny_synthetic.yaml"
TINY_INFERENCE = ["--config", TINY, "--frames", "2", "--height", "64", "--width", "96", "--expressions", "2", "1",
                  "--num_workers", "1", "--no_flops", "--msda_impl", "pytorch"]
TINY_TRAINING = {"tiny": ["--max_size", "96", "--batch_size", "1", "--num_frames", "2", "--num_workers", "0",
                          "--msda_impl", "pytorch"]}

no_gpu_only = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: the check would run")


@no_gpu_only
def test_without_a_gpu_the_tool_exits_at_once_with_a_clear_message(tmp_path, capsys):
    assert gpu_check.main(["--out", str(tmp_path / "out")]) == gpu_check.NO_GPU_EXIT
    assert "no CUDA GPU visible" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="nvidia-smi is installed here")
def test_without_a_gpu_the_script_exits_at_once_with_a_clear_message():
    result = subprocess.run(["bash", str(REPO_ROOT / "scripts" / "gpu_check.sh")], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == gpu_check.NO_GPU_EXIT
    assert "no NVIDIA GPU on this machine" in result.stderr


@pytest.fixture(scope="module")
def cpu_run(tmp_path_factory):
    """The measurement steps on the CPU at tiny sizes, assembled as run_checks records them."""
    work = tmp_path_factory.mktemp("gpu_check_work")
    op = gpu_check.step_op_benchmark(work, device="cpu", shape=OpShape(frames=1, height=64, width=96), repeats=2)
    inference = gpu_check.step_inference(work, device="cpu", options=TINY_INFERENCE, text_encoder="tiny")
    training = gpu_check.step_training(work, device="cpu", recipes={"tiny": TINY}, options=TINY_TRAINING, amp=None,
                                       iterations=2, warmup=1, frame_size=(64, 96))
    steps = {"environment": {"status": "ok", "seconds": 1.0,
                             "result": {"device_name": "Test CPU", "torch": torch.__version__, "cuda": None}},
             "build": {"status": "skipped", "reason": "no toolkit"},
             "op_check": {"status": "ok", "seconds": 9.0},
             "op_tests": {"status": "ok", "seconds": 20.0, "pytest": {"passed": 12, "deselected": 30}},
             "op_benchmark": {"status": "ok", "seconds": 3.0, "result": op},
             "inference": {"status": "ok", "seconds": 30.0, "result": inference},
             "training": {"status": "ok", "seconds": 20.0, "result": training}}
    return {"date": "2026-12-04", "seconds": 83.0, "steps": steps}


def test_op_benchmark_on_cpu_times_the_pytorch_path_and_skips_the_kernels(cpu_run):
    op = cpu_run["steps"]["op_benchmark"]["result"]
    assert op["level_shapes"] == [(8, 12), (4, 6), (2, 3), (1, 2)]
    assert op["queries_per_frame"] == 8 * 12 + 4 * 6 + 2 * 3 + 1 * 2
    assert [(row["dtype"], row["impl"]) for row in op["rows"]] == [("float32", "pytorch"), ("bfloat16", "pytorch")]
    assert all(row["median_ms"] > 0 and row["max_relative_difference"] == 0 for row in op["rows"])
    assert op["skipped"] == {"cuda": "needs a CUDA device and the built extension"}


def test_video_swin_b_encoder_sizes():
    shape = OpShape()
    assert shape.level_shapes() == [(45, 80), (23, 40), (12, 20), (6, 10)] and shape.queries == 4820


def test_inference_step_runs_both_modes_in_fp32_and_bf16_with_identical_masks(cpu_run):
    inference = cpu_run["steps"]["inference"]["result"]
    assert set(inference) == {"fp32", "bf16"}
    assert inference["fp32"]["amp"] is None and inference["bf16"]["amp"] == "bf16"
    for run in inference.values():
        assert [row["E"] for row in run["rows"]] == [1, 2]
        assert all(row["masks_identical"] for row in run["rows"])


def test_training_step_reports_time_per_iteration(cpu_run):
    tiny = cpu_run["steps"]["training"]["result"]["tiny"]
    assert tiny["iterations"] == 2 and tiny["warmup"] == 1 and tiny["seconds_per_iteration"] > 0
    assert tiny["peak_memory_mib"] is None and tiny["trainable_parameters"] > 0 and tiny["loss"] > 0


def test_results_json_and_markdown_rows_name_the_device(cpu_run, tmp_path):
    markdown = tmp_path / "BENCHMARKS.md"
    markdown.write_text("# Benchmarks\n\n## Inference speed\n\ntext\n")
    rows = gpu_check.write_results(cpu_run, tmp_path / "out", markdown)
    assert json.loads((tmp_path / "out" / "gpu_check.json").read_text())["steps"]["op_check"]["status"] == "ok"
    assert len(rows) == 1 + 1 + 2 + 1  # checks, op, inference E = 1 and 2, training
    assert all(row.startswith(f"| 2026-12-04 | Test CPU | {torch.__version__} / None |") for row in rows)
    assert "test_msdeform CUDA tests ok (20 s), 12 passed, 30 deselected" in rows[0]
    assert "PyTorch path" in rows[1] and "no CUDA kernels" in rows[1]
    text = markdown.read_text()
    assert text.startswith("# Benchmarks\n\n## Inference speed\n\ntext\n")
    assert text.split(gpu_check.SECTION)[1].count("| 2026-12-04 | Test CPU |") == len(rows)
    assert (tmp_path / "out" / "gpu_check_rows.md").read_text().splitlines()[-len(rows):] == rows


def test_rows_of_a_fetched_run_are_appended_below_the_previous_ones(cpu_run, tmp_path):
    run_file = tmp_path / "gpu_check.json"
    run_file.write_text(json.dumps(cpu_run, default=str))
    markdown = tmp_path / "BENCHMARKS.md"
    markdown.write_text("# Benchmarks\n")
    assert gpu_check.main(["--append-from", str(run_file), "--markdown", str(markdown)]) == 0
    markdown.write_text(markdown.read_text() + "\n## A later section\n\n| a | b |\n|---|---|\n| 1 | 2 |\n")
    later = dict(cpu_run, date="2026-12-05")
    run_file.write_text(json.dumps(later, default=str))
    assert gpu_check.main(["--append-from", str(run_file), "--markdown", str(markdown)]) == 0
    section, after = markdown.read_text().split(gpu_check.SECTION)[1].split("## A later section")
    table = [line for line in section.splitlines() if line.startswith("| 2026-12")]
    assert len(table) == 2 * len(gpu_check.markdown_rows(cpu_run))
    assert table[0].startswith("| 2026-12-04") and table[-1].startswith("| 2026-12-05")
    assert "| 1 | 2 |" in after


def test_steps_run_in_their_own_process_within_limits_and_budget(tmp_path):
    log = []
    steps = [gpu_check.Step("op_check", 120, 5), gpu_check.Step("op_tests", 1, 0), gpu_check.Step("build_tests", 60, 10 ** 6)]
    records = gpu_check.run_checks(tmp_path, budget=400, log=log.append, steps=steps)
    assert records["op_check"]["status"] == "ok" and "PASS" in records["op_check"]["tail"]
    assert records["op_tests"]["status"] == "timeout" and records["op_tests"]["seconds"] < 30
    assert records["build_tests"]["status"] == "skipped" and "left of the budget" in records["build_tests"]["reason"]
    assert any("op_check| MultiScaleDeformableAttention check" in line for line in log)
