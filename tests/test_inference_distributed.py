"""inference.py across processes: a 2-process torchrun (gloo) gives the PNGs of one process, and a run killed
part-way (SIGKILL) then rerun gives the output of an uninterrupted run."""
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from test_inference_fixtures import REPO_ROOT, assets_fixture, base_args, read_pngs, run_inference, torchrun_env  # noqa: F401

KILL_TIMEOUT = 180
POLL_SECONDS = 0.02


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def single_process(assets):
    out = assets["root"] / "single"
    assert run_inference(base_args(assets["checkpoint"], assets["text_encoder"], out)
                         + ["--dataset_file", "ytvos", "--ytvos_path", str(assets["ytvos"])]) == 0
    return read_pngs(out / "valid")


def test_two_process_torchrun_matches_one_process(assets, single_process, tmp_path):
    argv = base_args(assets["checkpoint"], assets["text_encoder"], tmp_path) + [
        "--dataset_file", "ytvos", "--ytvos_path", str(assets["ytvos"]), "--num_workers", "1"]
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
               "--master_port", str(free_port()), str(REPO_ROOT / "inference.py"), *argv]
    result = subprocess.run(command, cwd=REPO_ROOT, env=torchrun_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    distributed = read_pngs(tmp_path / "valid")
    assert distributed.keys() == single_process.keys()
    assert all(np.array_equal(distributed[k], single_process[k]) for k in single_process)
    assert (tmp_path / "submission_ytvos_valid.zip").is_file()
    assert result.stderr.count("inference finished") == 1  # rank 0 reports for all


def test_killed_run_resumes_to_the_uninterrupted_output(assets, single_process, tmp_path):
    argv = base_args(assets["checkpoint"], assets["text_encoder"], tmp_path) + [
        "--dataset_file", "ytvos", "--ytvos_path", str(assets["ytvos"]), "--num_workers", "1"]
    process = subprocess.Popen([sys.executable, str(REPO_ROOT / "inference.py"), *argv], cwd=REPO_ROOT,
                               env=torchrun_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + KILL_TIMEOUT
    committed = []
    while time.time() < deadline and process.poll() is None:
        valid = tmp_path / "valid"
        committed = [p for p in valid.glob("*/*") if p.is_dir() and not p.name.startswith(".")] if valid.is_dir() else []
        if committed:
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(POLL_SECONDS)
    process.wait(timeout=60)
    assert committed and process.returncode == -signal.SIGKILL, "the run ended before it could be interrupted"
    assert len(read_pngs(tmp_path / "valid")) < len(single_process)

    assert run_inference(argv) == 0
    resumed = read_pngs(tmp_path / "valid")
    assert resumed.keys() == single_process.keys()
    assert all(np.array_equal(resumed[k], single_process[k]) for k in single_process)
    assert not list((tmp_path / "valid").rglob(".*.partial"))
