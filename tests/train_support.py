"""Shared by the training tests: a small synthetic Ref-YouTube-VOS and the tiny text encoder (made once per
session), the tiny-model command line, and a runner for ``main.py`` in a subprocess."""
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY_CONFIG = REPO_ROOT / "configs" / "tiny" / "referformer_tiny_synthetic.yaml"
_WORLD: Dict[str, Path] = {}


def tiny_world(tmp_path_factory) -> Dict[str, Path]:
    """{'ytvos': dataset root, 'text_encoder': folder}, written on first use (3 train videos of 6 frames)."""
    if not _WORLD:
        from rvos.datasets.synthetic import make_dataset

        base = tmp_path_factory.mktemp("train_world")
        _WORLD["ytvos"] = make_dataset("ytvos", base / "ytvos", seed=0, num_videos=3, num_valid_videos=2,
                                       num_test_videos=1, num_frames=6, min_frames=6)
        _WORLD["text_encoder"] = base / "text_encoder"
        subprocess.run([sys.executable, str(REPO_ROOT / "tools" / "make_tiny_text_encoder.py"), "--out",
                        str(_WORLD["text_encoder"])], check=True, cwd=REPO_ROOT, capture_output=True)
    return _WORLD


def tiny_args(world: Dict[str, Path], output_dir: Optional[Path] = None, *extra: str) -> List[str]:
    """Options of the tiny model on the small world, sized for a shared 2-core CPU (2 frames, <= 96 pixels)."""
    args = ["--config", str(TINY_CONFIG), "--text_encoder", str(world["text_encoder"]),
            "--ytvos_path", str(world["ytvos"]), "--device", "cpu", "--batch_size", "1", "--num_workers", "0",
            "--num_frames", "2", "--max_size", "96"]
    if output_dir is not None:
        args += ["--output_dir", str(output_dir)]
    return args + list(extra)


def subprocess_env(threads: int = 1) -> Dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONPATH=str(REPO_ROOT), PYTHONUNBUFFERED="1")
    for name in list(env):
        if name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT") or name.startswith("SLURM_"):
            env.pop(name)
    return env


def run_checked(cmd: List[str], timeout: float = 170, threads: int = 1) -> subprocess.CompletedProcess:
    """Run ``cmd`` from the repository root; on failure the assertion shows its output."""
    result = subprocess.run(cmd, cwd=REPO_ROOT, env=subprocess_env(threads), capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout[-4000:]}\n" \
                                   f"{result.stderr[-8000:]}"
    return result
