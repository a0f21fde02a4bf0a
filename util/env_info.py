"""Provenance of a run: git revision, library versions, hardware and the MultiScaleDeformableAttention build.

``collect_env()`` is logged at start and saved as ``<output_dir>/env.json``; ``versions()`` and ``git_sha()``
go into every checkpoint.
"""
import functools
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Dict, Optional

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("torch", "torchvision", "transformers", "timm", "numpy", "scipy", "pycocotools", "opencv-python",
            "opencv-python-headless", "Pillow")


@functools.lru_cache(maxsize=None)
def git_sha(repo: Path = REPO_ROOT) -> str:
    """``<sha>`` of HEAD, ``<sha>-dirty`` with uncommitted changes to tracked files, ``unknown`` outside git
    (computed once per process)."""
    def git(*cmd) -> Optional[str]:
        try:
            result = subprocess.run(["git", *cmd], cwd=repo, capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.SubprocessError):
            return None
        return result.stdout.strip() if result.returncode == 0 else None

    sha = git("rev-parse", "HEAD")
    if not sha:
        return "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return f"{sha}-dirty" if dirty else sha


@functools.lru_cache(maxsize=None)
def _installed_versions() -> tuple:
    found = [("python", platform.python_version())]
    for name in PACKAGES:
        try:
            found.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            continue
    return tuple(found)


def versions() -> Dict[str, str]:
    """Python and the installed versions of the packages the project depends on (those found)."""
    return dict(_installed_versions())


def collect_env(msdeformattn: Dict[str, object]) -> Dict[str, object]:
    """A JSON-serialisable description of the software and hardware this process runs on; ``msdeformattn`` is
    the op's status (``rvos.models.ops.msda_status()``: the caller passes it, util stays below models)."""
    cuda = torch.cuda.is_available()
    env = {
        "versions": versions(),
        "python_executable": sys.executable,
        "platform": platform.platform(),
        "git_sha": git_sha(),
        "torch_cuda_build": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "cuda_available": cuda,
        "cuda_arch_list": torch.cuda.get_arch_list() if cuda else [],
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
        "cpu_threads": torch.get_num_threads(),
        "msdeformattn": msdeformattn,
    }
    return env


def format_env(env: Dict[str, object]) -> str:
    """A few readable lines of :func:`collect_env`."""
    msda = env["msdeformattn"]
    op = "compiled CUDA op" if msda["compiled_extension"] else f"PyTorch path ({msda['reason']})"
    gpus = ", ".join(env["gpus"]) or "none"
    lines = [
        f"git {env['git_sha']}",
        "versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items()),
        f"CUDA build {env['torch_cuda_build']}, cuDNN {env['cudnn']}, GPUs: {gpus}, "
        f"arch list {env['cuda_arch_list']}",
        f"MultiScaleDeformableAttention: {op} (--msda_impl {msda['impl_option']})",
    ]
    return "\n".join(lines)
