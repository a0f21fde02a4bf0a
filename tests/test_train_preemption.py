"""Preemption: a 2-process ``torchrun`` (gloo) training sent SIGTERM mid-epoch stops every rank at the same step,
saves, and its ``--resume auto`` ends exactly where an uninterrupted run ends. Sent to a worker (as SLURM signals
every process), twice, the second while it saves: every worker exits with the requeue code. Sent to torchrun itself:
torchrun forwards it to the workers, which save the same way; torchrun then exits 1 with its own traceback (its
code, not ours: docs/TRAINING.md)."""
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch

import test_train_resume as resume_test
from rvos.models.checkpoint import atomic_save, read_checkpoint
from rvos.util.preemption import (REQUEUE_EXIT_CODE, PreemptionSignal, ignore_preemption_signals,
                                  preemption_signals_ignored)
from train_support import REPO_ROOT, run_checked, subprocess_env, tiny_world

ITERATIONS = "4"


def torchrun(world, output_dir, *extra):
    command = resume_test.training_command(world, output_dir, "--max_iters_per_epoch", ITERATIONS, *extra)
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *command[1:]]


def workers_of(pid: int):
    found = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(p) for p in found]


def signal_after_first_checkpoint(cmd, checkpoint, target: str, timeout: float = 150) -> subprocess.CompletedProcess:
    """Start ``cmd``; once ``checkpoint`` exists send SIGTERM to one worker (twice) or to torchrun (once); return the
    finished process."""
    process = subprocess.Popen(cmd, cwd=REPO_ROOT, env=subprocess_env(1), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.time() + timeout
    try:
        while not checkpoint.exists() or len(workers_of(process.pid)) < 2:
            if process.poll() is not None or time.time() > deadline:
                pytest.fail(f"training exited ({process.returncode}) or timed out before its first checkpoint")
            time.sleep(0.02)
        if target == "worker":
            worker = workers_of(process.pid)[-1]
            for _ in range(2):
                subprocess.run(["kill", "-TERM", str(worker)], check=False)
                time.sleep(0.05)
        else:
            process.send_signal(signal.SIGTERM)
        stderr = process.communicate(timeout=timeout)[1]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return subprocess.CompletedProcess(cmd, process.returncode, "", stderr)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return tiny_world(tmp_path_factory)


@pytest.fixture(scope="module")
def straight(world, tmp_path_factory):
    """The checkpoint of an uninterrupted run."""
    out = tmp_path_factory.mktemp("straight")
    run_checked(torchrun(world, out), timeout=240)
    return read_checkpoint(out / "checkpoint.pth")


@pytest.mark.parametrize("target", ["worker", "torchrun"])
def test_sigterm_mid_epoch_saves_exits_for_requeue_and_resumes_exactly(world, straight, tmp_path, target):
    interrupted = tmp_path / "interrupted"
    stopped = signal_after_first_checkpoint(torchrun(world, interrupted), interrupted / "checkpoint.pth", target)
    if target == "worker":
        codes = [int(c) for c in re.findall(r"exitcode\s*:\s*(-?\d+)", stopped.stderr)]
        assert codes and set(codes) == {REQUEUE_EXIT_CODE}, stopped.stderr[-6000:]
    else:
        assert stopped.returncode == 1 and "SignalException" in stopped.stderr, stopped.stderr[-6000:]
    said = re.findall(rf"preempted \(.*\): state saved, exiting with code {REQUEUE_EXIT_CODE}", stopped.stderr)
    assert len(said) == 2, "both ranks must stop and say so"
    saved = read_checkpoint(interrupted / "checkpoint.pth")
    assert (saved["epoch"], saved["epoch_finished"]) == (0, False), "the stop must fall inside the first epoch"
    assert 1 <= saved["iteration"] < int(ITERATIONS)
    assert not [p.name for p in interrupted.iterdir() if ".tmp" in p.name], "a temporary file was left behind"

    run_checked(torchrun(world, interrupted, "--resume", "auto"), timeout=240)
    expected, resumed = straight, read_checkpoint(interrupted / "checkpoint.pth")
    assert (resumed["epoch"], resumed["iteration"], resumed["epoch_finished"]) == (1, int(ITERATIONS), True)
    resume_test.assert_same_tensors(expected["model"], resumed["model"], "model")
    resume_test.assert_same_tensors(expected["optimizer"]["state"], resumed["optimizer"]["state"], "optimizer")
    assert [g["lr"] for g in expected["optimizer"]["param_groups"]] == \
           [g["lr"] for g in resumed["optimizer"]["param_groups"]]
    assert expected["lr_scheduler"] == resumed["lr_scheduler"]
    assert expected["sampler"] == resumed["sampler"]
    resume_test.assert_same_tensors(expected["rng"], resumed["rng"], "rng")


class SignalsItsOwnProcess(torch.utils.data.Dataset):
    """Each item sends SIGUSR1 to the process that loads it (a DataLoader worker), as SLURM signals every process."""

    def __len__(self):
        return 4

    def __getitem__(self, index):
        os.kill(os.getpid(), signal.SIGUSR1)
        return index


def test_dataloader_workers_survive_the_signal_meant_for_the_trainer():
    loader = torch.utils.data.DataLoader(SignalsItsOwnProcess(), batch_size=2, num_workers=1,
                                         worker_init_fn=ignore_preemption_signals)
    assert [batch.tolist() for batch in loader] == [[0, 1], [2, 3]]


def test_signals_are_recorded_and_the_handlers_restored():
    before = signal.getsignal(signal.SIGTERM)
    with PreemptionSignal() as preemption:
        assert not preemption.requested
        os.kill(os.getpid(), signal.SIGUSR1)
        os.kill(os.getpid(), signal.SIGTERM)
        assert preemption.received == ("SIGUSR1", "SIGTERM")
    assert signal.getsignal(signal.SIGTERM) is before


class SignalsWhilePickled:
    """Inside a checkpoint: when torch.save pickles it, checks that the temporary file is being written and sends
    this process SIGTERM, so the signal arrives in the middle of the save."""

    def __init__(self, folder):
        self.folder = folder
        self.sent_while_writing = False

    def __reduce__(self):
        self.sent_while_writing = bool(list(self.folder.glob(".checkpoint.pth.tmp*")))
        os.kill(os.getpid(), signal.SIGTERM)
        return (int, (7,))


def test_a_second_signal_during_the_save_is_only_recorded(tmp_path):
    path = tmp_path / "checkpoint.pth"
    atomic_save({"model": {"w": torch.zeros(3)}}, path)
    weights = torch.arange(1 << 20, dtype=torch.float32)
    marker = SignalsWhilePickled(tmp_path)
    with PreemptionSignal() as preemption:
        os.kill(os.getpid(), signal.SIGTERM)  # the first signal: the run stops and saves
        atomic_save({"model": {"w": weights}, "marker": marker, "after": torch.ones(5)}, path)
        assert preemption.received == ("SIGTERM", "SIGTERM")
    assert marker.sent_while_writing, "the second signal must arrive while the temporary file is written"
    saved = torch.load(path, weights_only=False)  # the file this test wrote; the marker reduces to int(7)
    assert torch.equal(saved["model"]["w"], weights) and saved["marker"] == 7 and torch.equal(saved["after"],
                                                                                              torch.ones(5))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pth"]


def train_sh(world, output_dir, iterations: str):
    """The command line and environment of scripts/train.sh training the tiny model with 2 processes."""
    options = resume_test.training_command(world, output_dir, "--max_iters_per_epoch", iterations)[2:]
    at = options.index("--config")
    config, options = options[at + 1], options[:at] + options[at + 2:]
    env = subprocess_env(1)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env["PATH"]
    return ["bash", str(REPO_ROOT / "scripts" / "train.sh"), config, "2", *options], env


def ignores_sigterm(pid: int) -> bool:
    """Whether the process ignores SIGTERM now (the SigIgn mask of /proc/PID/status)."""
    with open(f"/proc/{pid}/status") as status:
        mask = next(line.split()[1] for line in status if line.startswith("SigIgn:"))
    return bool(int(mask, 16) >> (signal.SIGTERM - 1) & 1)


def run_train_sh_signalled(command, env, ready, send, timeout: float = 240) -> subprocess.CompletedProcess:
    """Start scripts/train.sh in a process group of its own, call ``send(process)`` once ``ready(process)`` holds and
    return the finished process (killed with its group if it outlives ``timeout``)."""
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    deadline = time.time() + timeout
    try:
        while not ready(process):
            if process.poll() is not None or time.time() > deadline:
                pytest.fail(f"training exited ({process.returncode}) or timed out before the signal was due: "
                            f"{process.stderr.read()[-3000:] if process.poll() is not None else ''}")
            time.sleep(0.01)
        send(process)
        stderr = process.communicate(timeout=timeout)[1]
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return subprocess.CompletedProcess(command, process.returncode, "", stderr)


def assert_stopped_mid_epoch(result: subprocess.CompletedProcess, output_dir, iterations: int) -> None:
    """Both workers saved on the preemption signal within the first epoch and the script exited 124."""
    assert result.returncode == REQUEUE_EXIT_CODE, result.stderr[-6000:]
    assert len(re.findall(r"preempted \(SIG(USR1|TERM)\): state saved", result.stderr)) == 2, result.stderr[-6000:]
    saved = read_checkpoint(output_dir / "checkpoint.pth")
    assert (saved["epoch"], saved["epoch_finished"]) == (0, False) and 1 <= saved["iteration"] < iterations


@pytest.mark.parametrize("how", ["USR1 to every process", "TERM to the script"])
def test_train_sh_turns_a_preemption_into_the_requeue_code(world, straight, tmp_path, how):
    """scripts/train.sh (torchrun, 2 processes) signalled as SLURM does (SIGUSR1 to the whole process group) or by a
    user (SIGTERM to the script alone): the workers save mid-epoch, the script exits 124 although torchrun exits 1,
    and the same command then ends exactly where an uninterrupted run ends."""
    out = tmp_path / "out"
    command, env = train_sh(world, out, ITERATIONS)

    def send(process):
        if how == "USR1 to every process":
            os.killpg(process.pid, signal.SIGUSR1)
        else:
            process.send_signal(signal.SIGTERM)

    result = run_train_sh_signalled(command, env, lambda _: (out / "checkpoint.pth").exists(), send)
    assert_stopped_mid_epoch(result, out, int(ITERATIONS))

    resumed = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert resumed.returncode == 0, resumed.stderr[-6000:]
    final = read_checkpoint(out / "checkpoint.pth")
    assert (final["epoch"], final["iteration"], final["epoch_finished"]) == (1, int(ITERATIONS), True)
    resume_test.assert_same_tensors(straight["model"], final["model"], "model")
    resume_test.assert_same_tensors(straight["optimizer"]["state"], final["optimizer"]["state"], "optimizer")
    assert straight["sampler"] == final["sampler"]


def test_train_sh_repeats_a_signal_that_came_before_the_workers_handle_it(world, tmp_path):
    """SIGTERM to scripts/train.sh while its workers still import (they ignore it until main.py installs its handler):
    the script repeats the signal until torchrun exits, so the run stops mid-epoch with a checkpoint and exit 124
    instead of training on as if nothing had been sent."""
    iterations = 30
    out = tmp_path / "out"
    command, env = train_sh(world, out, str(iterations))

    def workers(process):
        launcher = workers_of(process.pid)
        return workers_of(launcher[0]) if launcher else []

    def send(process):
        assert all(ignores_sigterm(pid) for pid in workers(process)), "the signal must come before main.py handles it"
        process.send_signal(signal.SIGTERM)

    result = run_train_sh_signalled(command, env, lambda process: len(workers(process)) == 2, send)
    assert_stopped_mid_epoch(result, out, iterations)


def test_a_signal_during_start_up_stops_after_the_first_step(world, tmp_path, monkeypatch):
    """SIGTERM while the model is being built (before any step; scripts/train.sh starts the workers with the signal
    ignored until main.py handles it): the run takes one step, saves it and exits with the requeue code."""
    from rvos import main as train

    real_build = train.build_model

    def build_then_signalled(args):
        os.kill(os.getpid(), signal.SIGTERM)  # a real signal, delivered during start-up
        return real_build(args)

    monkeypatch.setattr(train, "build_model", build_then_signalled)
    out = tmp_path / "out"
    options = resume_test.training_command(world, out, "--max_iters_per_epoch", ITERATIONS)[2:]
    assert train.main(options) == REQUEUE_EXIT_CODE
    saved = read_checkpoint(out / "checkpoint.pth")
    assert (saved["epoch"], saved["iteration"], saved["epoch_finished"]) == (0, 1, False)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_a_rank_that_saved_ignores_a_late_signal_while_it_exits():
    """What launch does after a preemption stop: SIGTERM and SIGUSR1 sent while the process group is destroyed
    (torchrun signals the ranks still running once one has exited) are ignored; the handlers are restored after."""
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGUSR1)}
    with preemption_signals_ignored():
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGUSR1)
        time.sleep(0.05)
    assert {sig: signal.getsignal(sig) for sig in before} == before
