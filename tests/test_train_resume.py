"""Crash and resume: a training process killed with SIGKILL after a mid-epoch checkpoint, resumed with
``--resume auto``, ends with exactly the parameters, optimiser and scheduler state of an uninterrupted run."""
import signal
import subprocess
import sys
import time

import pytest
import torch

from rvos.models.checkpoint import read_checkpoint
from rvos.opts import get_args_parser
from train_support import REPO_ROOT, run_checked, subprocess_env, tiny_args, tiny_world

# Until opts.py has --save_every_iters, the attribute is set on the parsed options (main.py reads it with getattr).
LAUNCH_WITH_SAVE_EVERY = (
    "import sys, main, opts\n"
    "args = opts.parse_args(sys.argv[2:])\n"
    "args.save_every_iters = int(sys.argv[1])\n"
    "sys.exit(main.launch(args))\n"
)


def training_command(world, output_dir, *extra, save_every: int = 1):
    options = tiny_args(world, output_dir, "--epochs", "2", "--lr_drop", "1", "--max_iters_per_epoch", "2", *extra)
    if "save_every_iters" in {action.dest for action in get_args_parser()._actions}:
        return [sys.executable, str(REPO_ROOT / "main.py"), *options, "--save_every_iters", str(save_every)]
    return [sys.executable, "-c", LAUNCH_WITH_SAVE_EVERY, str(save_every), *options]


def kill_after_first_checkpoint(cmd, checkpoint, timeout: float = 150) -> None:
    process = subprocess.Popen(cmd, cwd=REPO_ROOT, env=subprocess_env(2), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.time() + timeout
    try:
        while not checkpoint.exists():
            if process.poll() is not None:
                pytest.fail(f"training exited ({process.returncode}) before writing a checkpoint:\n"
                            f"{process.stderr.read()[-6000:]}")
            if time.time() > deadline:
                pytest.fail("no checkpoint was written in time")
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=30)
        process.stderr.close()


def assert_same_tensors(a, b, what: str) -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), what
    elif isinstance(a, dict):
        assert set(a) == set(b), f"{what}: keys differ"
        for key in a:
            assert_same_tensors(a[key], b[key], f"{what}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), what
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_tensors(x, y, f"{what}[{i}]")
    else:
        assert a == b, f"{what}: {a!r} != {b!r}"


def test_sigkill_then_resume_equals_uninterrupted_run(tmp_path_factory, tmp_path):
    world = tiny_world(tmp_path_factory)
    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"

    run_checked(training_command(world, straight), threads=2)

    kill_after_first_checkpoint(training_command(world, interrupted), interrupted / "checkpoint.pth")
    crashed = read_checkpoint(interrupted / "checkpoint.pth")
    assert not (crashed["epoch"] == 1 and crashed["epoch_finished"]), "the run finished before it was killed"
    assert crashed["iteration"] >= 1

    run_checked(training_command(world, interrupted, "--resume", "auto"), threads=2)

    expected, resumed = read_checkpoint(straight / "checkpoint.pth"), read_checkpoint(interrupted / "checkpoint.pth")
    assert (resumed["epoch"], resumed["iteration"], resumed["epoch_finished"]) == (1, 2, True)
    assert_same_tensors(expected["model"], resumed["model"], "model")
    assert_same_tensors(expected["optimizer"]["state"], resumed["optimizer"]["state"], "optimizer")
    assert [g["lr"] for g in expected["optimizer"]["param_groups"]] == \
           [g["lr"] for g in resumed["optimizer"]["param_groups"]]
    assert expected["lr_scheduler"] == resumed["lr_scheduler"]
    assert expected["sampler"] == resumed["sampler"]
    log_lines = (interrupted / "log.txt").read_text().splitlines()
    assert len(log_lines) >= 1 and '"epoch": 1' in log_lines[-1]
