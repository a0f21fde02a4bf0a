"""Helpers of the inference tests: a tiny text encoder, a tiny checkpoint (random weights, our format with its
config), synthetic datasets and in-process ``inference.py`` runs. No tests here."""
import os
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest
import torch
from PIL import Image

from rvos import opts
from rvos.datasets.synthetic import make_dataset
from rvos.models import build_model

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY_CONFIG = REPO_ROOT / "configs" / "tiny" / "referformer_tiny_synthetic.yaml"
# Frames are resized to this short side (the synthetic frames are 96 px high): the masks are upsampled back.
SHORT_SIDE = "64"


def write_text_encoder(folder: Path) -> Path:
    from rvos.tools.make_tiny_text_encoder import write_tiny_text_encoder

    return write_tiny_text_encoder(folder)


def write_checkpoint(path: Path, text_encoder: Path) -> Path:
    """A tiny ReferFormer with random weights, saved with its config as training saves it."""
    args = opts.parse_args(["--config", str(TINY_CONFIG), "--text_encoder", str(text_encoder)])
    torch.manual_seed(0)
    model, _, _ = build_model(args)
    torch.save({"model": model.state_dict(), "config": opts.args_to_config(args)}, path)
    return path


def base_args(checkpoint: Path, text_encoder: Path, output_dir: Path) -> List[str]:
    return ["--resume", str(checkpoint), "--text_encoder", str(text_encoder), "--device", "cpu", "--msda_impl",
            "pytorch", "--num_workers", "2", "--test_short_side", SHORT_SIDE, "--output_dir", str(output_dir)]


def run_inference(argv: List[str]) -> int:
    from rvos import inference

    return inference.main(argv)


def read_pngs(root: Path) -> Dict[str, np.ndarray]:
    """Every PNG under ``root`` (relative path -> pixel array), ignoring partial folders."""
    return {str(p.relative_to(root)): np.asarray(Image.open(p)) for p in sorted(Path(root).rglob("*.png"))
            if not any(part.startswith(".") for part in p.relative_to(root).parts)}


def torchrun_env() -> Dict[str, str]:
    """Environment of a subprocess: the repository importable, torch threads as in this process."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = str(torch.get_num_threads())
    return env


@pytest.fixture(scope="module", name="assets")
def assets_fixture(tmp_path_factory) -> Dict[str, Path]:
    """Text encoder, checkpoint and a synthetic Ref-YouTube-VOS, shared by a test module."""
    root = tmp_path_factory.mktemp("inference_assets")
    text_encoder = write_text_encoder(root / "text_encoder")
    return {"root": root, "text_encoder": text_encoder,
            "checkpoint": write_checkpoint(root / "checkpoint.pth", text_encoder),
            "ytvos": make_dataset("ytvos", root / "ytvos", seed=0)}
