"""A process killed (SIGKILL) while writing a checkpoint leaves the previous checkpoint intact and loadable."""
import signal
import subprocess
import sys

import torch

from rvos.models.checkpoint import read_checkpoint
from train_support import REPO_ROOT, subprocess_env

# Saves version 0 normally, then starts saving version 1 with a torch.save that writes half of the bytes, flushes
# them to the file and waits: the parent kills the process at that moment.
WRITER = r"""
import io, sys, time, torch
from rvos.models.checkpoint import atomic_save

path = sys.argv[1]
weights = torch.arange(1_000_000, dtype=torch.float32)
atomic_save({"model": {"w": weights}, "version": 0}, path)
real_save = torch.save

def half_then_hang(obj, f):
    buffer = io.BytesIO()
    real_save(obj, buffer)
    data = buffer.getvalue()
    f.write(data[: len(data) // 2])
    f.flush()
    print("HALF-WRITTEN", flush=True)
    time.sleep(120)

torch.save = half_then_hang
atomic_save({"model": {"w": weights + 1}, "version": 1}, path)
"""


def test_kill_during_checkpoint_write_keeps_previous_file(tmp_path):
    path = tmp_path / "checkpoint.pth"
    process = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], cwd=REPO_ROOT, env=subprocess_env(),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        assert line.strip() == "HALF-WRITTEN", process.stderr.read()
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=30)
        process.stdout.close()
        process.stderr.close()
    assert process.returncode == -signal.SIGKILL

    partial = [p for p in tmp_path.iterdir() if p.name != path.name]
    assert len(partial) == 1 and partial[0].stat().st_size > 0, "the kill should land inside the temporary file"
    ckpt = read_checkpoint(path)
    assert ckpt["version"] == 0
    assert torch.equal(ckpt["model"]["w"], torch.arange(1_000_000, dtype=torch.float32))
