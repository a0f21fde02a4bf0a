"""Launch detection (torchrun, SLURM, single process), a real two-process gloo group started the SLURM way,
``--resume`` resolution, and the RNG capture / per-sample seeding that exact resume relies on."""
import os
import random
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch

from rvos.main import resolve_resume
from rvos.opts import parse_args
from train_support import REPO_ROOT, subprocess_env
from rvos.util.dist import detect_launch, first_slurm_host
from rvos.util.rng import SeededDataset, SeededSampler, capture_rng_state, restore_rng_state, sample_seed

LAUNCH_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID",
              "SLURM_JOB_NODELIST", "SLURM_NODELIST", "SLURM_JOB_ID", "MASTER_ADDR", "MASTER_PORT")


@pytest.fixture
def clean_env(monkeypatch):
    """No launcher variables; everything detect_launch exports is undone afterwards."""
    saved = dict(os.environ)
    for name in LAUNCH_ENV:
        monkeypatch.delenv(name, raising=False)
    yield monkeypatch
    monkeypatch.undo()  # first: its undo would put back values that detect_launch exported in between
    os.environ.clear()
    os.environ.update(saved)


@pytest.mark.parametrize("nodelist, host", [("node7", "node7"), ("gpu[03-05,9],cpu1", "gpu03"),
                                            ("a-[1,4]-ib", "a-1-ib"), ("x[010-012]", "x010")])
def test_first_slurm_host(nodelist, host):
    assert first_slurm_host(nodelist) == host


def test_detect_torchrun_slurm_and_single(clean_env):
    assert detect_launch().launcher == "single" and not detect_launch().distributed
    clean_env.setenv("SLURM_PROCID", "0")
    clean_env.setenv("SLURM_NTASKS", "1")
    assert detect_launch().launcher == "single"
    clean_env.setenv("SLURM_PROCID", "5")
    clean_env.setenv("SLURM_NTASKS", "8")
    clean_env.setenv("SLURM_LOCALID", "1")
    clean_env.setenv("SLURM_JOB_NODELIST", "gpu[12-13]")
    clean_env.setenv("SLURM_JOB_ID", "123456")
    ctx = detect_launch()
    assert (ctx.launcher, ctx.rank, ctx.world_size, ctx.local_rank) == ("slurm", 5, 8, 1)
    assert os.environ["MASTER_ADDR"] == "gpu12" and os.environ["MASTER_PORT"] == str(15000 + 123456 % 20000)
    clean_env.setenv("RANK", "3")
    clean_env.setenv("WORLD_SIZE", "4")
    clean_env.setenv("LOCAL_RANK", "3")
    assert (detect_launch().launcher, detect_launch().rank) == ("torchrun", 3)


GROUP_MEMBER = r"""
import argparse, torch, torch.distributed as dist
from rvos.util.dist import init_distributed_mode, reduce_dict
args = argparse.Namespace(device="cpu", local_rank=None)
ctx = init_distributed_mode(args)
total = reduce_dict({"x": torch.tensor(float(ctx.rank + 1))}, average=False)["x"]
print(ctx.launcher, ctx.backend, ctx.rank, ctx.world_size, args.distributed, int(total))
dist.destroy_process_group()
"""


def test_two_slurm_tasks_form_a_gloo_group():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    processes = []
    for rank in range(2):
        env = subprocess_env()
        env.update(SLURM_PROCID=str(rank), SLURM_NTASKS="2", SLURM_LOCALID=str(rank),
                   SLURM_JOB_NODELIST="localhost", MASTER_PORT=str(port))
        processes.append(subprocess.Popen([sys.executable, "-c", GROUP_MEMBER], cwd=REPO_ROOT, env=env,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = [p.communicate(timeout=120) for p in processes]
    for process, (out, err) in zip(processes, outputs):
        assert process.returncode == 0, err[-3000:]
    assert [out.split() for out, _ in outputs] == [["slurm", "gloo", str(r), "2", "True", "3"] for r in range(2)]


def test_resume_resolution_never_overwrites_a_previous_run(tmp_path):
    out = tmp_path / "run"
    args = parse_args(["--output_dir", str(out)])
    assert resolve_resume(args, out) is None
    out.mkdir()
    (out / "checkpoint.pth").write_bytes(b"x")
    with pytest.raises(FileExistsError, match="--resume auto"):
        resolve_resume(args, out)
    assert resolve_resume(parse_args(["--output_dir", str(out), "--resume", "auto"]), out) == out / "checkpoint.pth"
    assert resolve_resume(parse_args(["--output_dir", str(tmp_path / "new"), "--resume", "auto"]),
                          tmp_path / "new") is None
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        resolve_resume(parse_args(["--resume", str(tmp_path / "missing.pth")]), out)


def test_rng_state_round_trip():
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    state = capture_rng_state()
    expected = (random.random(), np.random.rand(), torch.rand(3))
    random.seed(9)
    np.random.seed(9)
    torch.manual_seed(9)
    restore_rng_state(state)
    again = (random.random(), np.random.rand(), torch.rand(3))
    assert expected[:2] == again[:2] and torch.equal(expected[2], again[2])


class RandomDraws(torch.utils.data.Dataset):
    """Item i: draws from the global generators (as the video transforms do)."""

    def __len__(self):
        return 5

    def __getitem__(self, index):
        return index, random.random(), float(np.random.rand()), float(torch.rand(()))


class EpochOrder(torch.utils.data.Sampler):
    def __init__(self):
        self.epoch = 0

    def __iter__(self):
        return iter([4, 2, 0])

    def __len__(self):
        return 3


def test_seeded_samples_depend_on_seed_epoch_and_index_only():
    dataset, sampler = SeededDataset(RandomDraws()), SeededSampler(EpochOrder(), seed=7)
    torch.manual_seed(0)
    first = [dataset[item] for item in sampler]
    random.random()
    torch.rand(5)
    assert [dataset[item] for item in sampler] == first
    before = torch.get_rng_state()
    dataset[(1, 123)]
    assert torch.equal(before, torch.get_rng_state()), "loading must not disturb the model's generator"
    sampler.sampler.epoch = 1
    assert [dataset[item] for item in sampler] != first
    assert sample_seed(7, 0, 4) == next(iter(SeededSampler(EpochOrder(), seed=7)))[1]
