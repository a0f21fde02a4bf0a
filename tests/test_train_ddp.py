"""Two real processes on CPU (gloo): ``torchrun`` trains the tiny model and writes a checkpoint; the legacy
``python -m torch.distributed.launch --use_env`` resumes it for a second epoch."""
import json
import socket
import sys

import pytest
import torch

from rvos.models.checkpoint import read_checkpoint
from rvos.opts import parse_args
from train_support import REPO_ROOT, run_checked, tiny_args, tiny_world


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_process_training_then_resume_with_legacy_launcher(tmp_path_factory, tmp_path):
    world = tiny_world(tmp_path_factory)
    out = tmp_path / "ddp"
    options = tiny_args(world, out, "--max_iters_per_epoch", "2", "--lr_drop", "1")

    first = run_checked([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                         str(REPO_ROOT / "main.py"), *options, "--epochs", "1"])
    assert "launcher torchrun: rank 0 of 2" in first.stderr
    ckpt = read_checkpoint(out / "checkpoint.pth")
    assert (ckpt["epoch"], ckpt["iteration"], ckpt["epoch_finished"], ckpt["world_size"]) == (0, 2, True, 2)
    assert len(ckpt["rng"]) == 2 and not torch.equal(ckpt["rng"][0]["torch"], ckpt["rng"][1]["torch"])
    assert isinstance(ckpt["config"], dict) and ckpt["config"]["world_size"] == 2
    assert "torch" in ckpt["versions"] and ckpt["git_sha"]
    assert ckpt["sampler"]["consumed"] == 2 * 2 * 1
    assert (out / "checkpoint0000.pth").is_file()
    assert json.loads((out / "log.txt").read_text().splitlines()[0])["epoch"] == 0
    assert "msdeformattn" in json.loads((out / "env.json").read_text())
    assert list((out / "tb" / "main").glob("events.out.tfevents.*"))
    reloaded = parse_args(["--config", str(out / "config.yaml")])
    assert reloaded.text_encoder == str(world["text_encoder"]) and reloaded.max_size == 96

    run_checked([sys.executable, "-m", "torch.distributed.launch", "--nproc_per_node", "2", "--use_env",
                 "--master_port", str(free_port()), str(REPO_ROOT / "main.py"), *options, "--epochs", "2",
                 "--resume", "auto"])
    resumed = read_checkpoint(out / "checkpoint.pth")
    assert (resumed["epoch"], resumed["epoch_finished"]) == (1, True)
    dropped = [2e-4 * 0.1, 1e-4 * 0.1, 1e-4 * 0.1, 2e-4 * 0.1]  # the tiny config's LRs after the drop at epoch 1
    assert [group["lr"] for group in resumed["optimizer"]["param_groups"]] == pytest.approx(dropped, rel=1e-9)
    changed = [k for k, v in resumed["model"].items() if not torch.equal(v, ckpt["model"][k])]
    assert changed, "the second epoch did not update the model"
    assert [json.loads(line)["epoch"] for line in (out / "log.txt").read_text().splitlines()] == [0, 1]
