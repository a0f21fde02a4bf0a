"""Nothing already computed is lost by a kill at the end of an epoch, by a mid-epoch resume (the epoch's logged loss
covers the whole epoch), by a second training started in the same --output_dir, or by temp files of killed saves."""
import json
import os
import socket
import subprocess
import sys

import pytest

import test_train_resume as resume_test
from rvos import main as train
from rvos.models.checkpoint import read_checkpoint
from rvos.util.run_lock import LOCK_NAME, RunLock, RunLockError
from train_support import REPO_ROOT, run_checked, subprocess_env, tiny_args, tiny_world

# main.py that SIGKILLs itself right after writing the file named by argv[1] ("numbered": the first
# checkpoint{epoch:04d}.pth, "log": the first log.txt row), the end-of-epoch steps before checkpoint.pth.
KILLED_AFTER = r"""
import os, signal, sys
from pathlib import Path
from rvos import main

point = sys.argv[1]
real_save, real_append = main.atomic_save, main.append_json_line

def save(obj, path):
    real_save(obj, path)
    if point == "numbered" and Path(path).name != main.CHECKPOINT_NAME:
        os.kill(os.getpid(), signal.SIGKILL)

def append(path, record):
    real_append(path, record)
    if point == "log":
        os.kill(os.getpid(), signal.SIGKILL)

main.atomic_save, main.append_json_line = save, append
sys.exit(main.main(sys.argv[2:]))
"""


def log_rows(folder):
    return [json.loads(line) for line in (folder / "log.txt").read_text().splitlines()]


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    world = tiny_world(tmp_path_factory)
    out = tmp_path_factory.mktemp("lost_work") / "straight"
    run_checked(resume_test.training_command(world, out), threads=2)
    return out


@pytest.mark.parametrize("point", ["numbered", "log"])
def test_a_kill_before_the_epoch_is_marked_finished_loses_nothing(tmp_path_factory, tmp_path, straight, point):
    world = tiny_world(tmp_path_factory)
    out = tmp_path / "out"
    command = resume_test.training_command(world, out)
    killed = subprocess.run([sys.executable, "-c", KILLED_AFTER, point, *command[2:]], cwd=REPO_ROOT,
                            env=subprocess_env(2), capture_output=True, text=True, timeout=170)
    assert killed.returncode == -9, killed.stderr[-4000:]
    before = read_checkpoint(out / "checkpoint.pth")
    assert (before["epoch"], before["epoch_finished"]) == (0, False), "checkpoint.pth must not mark epoch 0 finished"
    assert (out / LOCK_NAME).is_file(), "the killed run leaves its lock behind"

    run_checked(resume_test.training_command(world, out, "--resume", "auto"), threads=2)
    assert (out / "checkpoint0000.pth").is_file(), "the pre-LR-drop checkpoint is lost"
    resume_test.assert_same_tensors(read_checkpoint(straight / "checkpoint0000.pth")["model"],
                                    read_checkpoint(out / "checkpoint0000.pth")["model"], "checkpoint0000 model")
    rows, expected = log_rows(out), log_rows(straight)
    assert [r["epoch"] for r in rows] == [0, 1], "every epoch has exactly one log row"
    for row, want in zip(rows, expected):  # the resumed epoch's averages cover all of its iterations
        assert row["train_loss"] == pytest.approx(want["train_loss"], rel=1e-6, abs=1e-6)
        assert row["train_lr"] == pytest.approx(want["train_lr"], rel=1e-9)
    assert not (out / LOCK_NAME).exists()


def test_a_second_training_in_the_same_output_dir_is_refused(tmp_path_factory, tmp_path):
    world = tiny_world(tmp_path_factory)
    out = tmp_path / "out"
    with RunLock(out):  # this test process is the first training
        with pytest.raises(RunLockError, match=rf"used by another training run \(pid {os.getpid()} on this host, "
                                               rf"lock {out / LOCK_NAME}\)"):
            train.main(tiny_args(world, out, "--epochs", "1", "--max_iters_per_epoch", "1"))
        assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME], "the refused run wrote into the folder"
    assert not (out / LOCK_NAME).exists()


def test_a_lock_of_another_host_is_never_taken_over(tmp_path):
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": 1, "host": socket.gethostname() + "-elsewhere"}))
    with pytest.raises(RunLockError, match=r"pid 1 on host .*-elsewhere"):
        RunLock(tmp_path).acquire()
    assert (tmp_path / LOCK_NAME).is_file()


def test_a_stale_lock_is_taken_over_and_killed_saves_are_cleaned(tmp_path_factory, tmp_path):
    world = tiny_world(tmp_path_factory)
    out = tmp_path / "out"
    out.mkdir()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (out / LOCK_NAME).write_text(json.dumps({"pid": gone.pid, "host": socket.gethostname()}))
    leftover = out / f".checkpoint.pth.tmp{gone.pid}"
    leftover.write_bytes(b"half a checkpoint")
    assert train.main(tiny_args(world, out, "--epochs", "1", "--max_iters_per_epoch", "1")) == 0
    assert not leftover.exists(), "the temp file of the killed save is still there"
    assert read_checkpoint(out / "checkpoint.pth")["epoch_finished"]
    assert not (out / LOCK_NAME).exists()


def test_a_lock_whose_pid_was_reused_is_stale(tmp_path, caplog):
    """The lock names a running pid (this process) but a different process start: the run that wrote it is gone and
    its pid was given to another process, so the lock is taken over; with the true start it is refused."""
    me = {"pid": os.getpid(), "host": socket.gethostname()}
    (tmp_path / LOCK_NAME).write_text(json.dumps({**me, "started": "an-earlier-boot:12345"}))
    with caplog.at_level("WARNING"), RunLock(tmp_path):
        assert json.loads((tmp_path / LOCK_NAME).read_text())["started"] != "an-earlier-boot:12345"
    assert f"taking over the stale lock of pid {os.getpid()} (now another process on this host)" in caplog.text
    with RunLock(tmp_path):
        with pytest.raises(RunLockError, match=rf"pid {os.getpid()} on this host"):
            RunLock(tmp_path).acquire()


def test_a_mid_epoch_resume_with_a_larger_batch_trains_every_remaining_sample(tmp_path_factory, tmp_path,
                                                                              monkeypatch):
    """Stopped after 3 iterations of batch 1, resumed with --batch_size 2: the epoch goes on with every remaining
    sample (the saved iteration used to be counted in the new batches, so the epoch ended early, skipping data)."""
    world = tiny_world(tmp_path_factory)
    out = tmp_path / "out"
    real_should_stop = train.Trainer.should_stop
    monkeypatch.setattr(train.Trainer, "should_stop", lambda self: self.done == 3 or real_should_stop(self))
    assert train.main(tiny_args(world, out, "--epochs", "1")) == 0
    stopped = read_checkpoint(out / "checkpoint.pth")
    assert (stopped["iteration"], stopped["epoch_finished"], stopped["sampler"]["consumed"]) == (3, False, 3)
    monkeypatch.setattr(train.Trainer, "should_stop", real_should_stop)
    assert train.main(tiny_args(world, out, "--epochs", "1", "--resume", "auto", "--batch_size", "2")) == 0
    final = read_checkpoint(out / "checkpoint.pth")
    size = final["sampler"]["dataset_size"]
    assert final["epoch_finished"] and final["sampler"]["consumed"] == 3 + 2 * ((size - 3) // 2)
    log = (out / "train.log").read_text()
    assert "stopped after 3 samples of epoch 0 (its iteration 3)" in log
    assert "continues from iteration 1 with every remaining sample" in log
