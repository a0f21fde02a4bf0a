"""Build helpers of the MultiScaleDeformableAttention CUDA extension, shared by setup.py and the JIT loader.

Two ways to build:

* ahead of time: ``pip install -e . --no-build-isolation`` or ``python setup.py build_ext --inplace`` (setup.py
  loads this file by path) places ``models/ops/_msda*.so`` beside this file;
* just in time: ``python -m rvos.models.ops.build`` (or ``RVOS_MSDA_JIT=1`` at run time) compiles the same sources
  with ``torch.utils.cpp_extension.load`` + ninja into a cache directory keyed by torch / CUDA version and
  architecture list, so a stale build for another torch is never picked up.

The CUDA architectures come from ``TORCH_CUDA_ARCH_LIST`` (e.g. ``"9.0"``; one architecture keeps the compile
short), else from the visible GPUs, else a default list for the CUDA version.  The list is recorded in the
compiled module (``build_info()['cuda_arch_list']``) so ``python -m rvos.models.ops.check`` can report it.

This module imports nothing from the package so setup.py can load it before the package is importable, and it
imports ``torch.utils.cpp_extension`` only after ``CUDA_HOME`` is settled (that module reads it at import).
"""
import argparse
import logging
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Dict, List, Optional

logger = logging.getLogger(__name__)

OPS_DIR = Path(__file__).resolve().parent
SOURCE_DIR = OPS_DIR / "src"
AOT_MODULE_NAME = "_msda"  # imported as rvos.models.ops._msda
JIT_MODULE_NAME = "rvos_msda_jit"
BUILD_INFO_HEADER = "msda_build_info.h"
CUDA_HOME_ENV_VARS = ("CUDA_HOME", "CUDA_PATH")
# Conventional toolkit location, tried last (as torch.utils.cpp_extension does).
CONVENTIONAL_CUDA_HOME = Path("/usr/local/cuda")
# Used only when the installed PyTorch reports no CUDA architectures (a CPU-only PyTorch).
FALLBACK_CUDA_ARCH_LIST = "7.5;8.0;8.6;8.9;9.0+PTX"


def is_cuda_toolkit(path: Optional[Path]) -> bool:
    """True when ``path`` holds a CUDA toolkit with both nvcc and the runtime headers."""
    return path is not None and (path / "bin" / "nvcc").is_file() and (path / "include" / "cuda_runtime.h").is_file()


def find_cuda_home() -> Optional[str]:
    """Locate the CUDA toolkit: $CUDA_HOME / $CUDA_PATH, the real location of ``nvcc`` on PATH, /usr/local/cuda.

    Unlike torch's guess this follows symlinks and checks for ``include/cuda_runtime.h``, so a wrapper script
    such as /usr/local/bin/nvcc does not yield a toolkit root without headers.  Returns None when none is found.
    """
    for var in CUDA_HOME_ENV_VARS:
        if os.environ.get(var):
            candidate = Path(os.environ[var])
            if not is_cuda_toolkit(candidate):
                logger.warning("%s=%s does not contain bin/nvcc and include/cuda_runtime.h", var, candidate)
            return str(candidate)
    nvcc = shutil.which("nvcc")
    candidates = [Path(os.path.realpath(nvcc)).parent.parent] if nvcc else []
    candidates.append(CONVENTIONAL_CUDA_HOME)
    for candidate in candidates:
        if is_cuda_toolkit(candidate):
            return str(candidate.resolve())
    return None


def ensure_cuda_home() -> str:
    """Find the toolkit and export it as ``CUDA_HOME`` for torch.utils.cpp_extension; raise if there is none."""
    cuda_home = find_cuda_home()
    if cuda_home is None:
        raise RuntimeError(
            "No CUDA toolkit found (need bin/nvcc and include/cuda_runtime.h): set CUDA_HOME to the toolkit "
            "root, e.g. CUDA_HOME=/usr/local/cuda.  Without it the pure-PyTorch path is used."
        )
    os.environ["CUDA_HOME"] = cuda_home
    if "torch.utils.cpp_extension" in sys.modules:
        known = sys.modules["torch.utils.cpp_extension"].CUDA_HOME
        if known is None or Path(known).resolve() != Path(cuda_home).resolve():
            raise RuntimeError(
                f"torch.utils.cpp_extension was imported before CUDA_HOME was set and uses CUDA_HOME={known}; "
                f"set CUDA_HOME={cuda_home} in the environment before starting Python"
            )
    return cuda_home


def default_cuda_arch_list() -> str:
    """Architectures compiled when neither TORCH_CUDA_ARCH_LIST nor a GPU says which: those the installed
    PyTorch was built for (``torch.cuda.get_arch_list()``), with PTX of the newest for future GPUs."""
    import torch

    numbers = sorted({int(match) for arch in torch.cuda.get_arch_list() for match in re.findall(r"^sm_(\d+)", arch)})
    if not numbers:
        return FALLBACK_CUDA_ARCH_LIST
    return ";".join(f"{n // 10}.{n % 10}" for n in numbers) + "+PTX"


def resolve_cuda_arch_list() -> str:
    """The architecture list to compile for: $TORCH_CUDA_ARCH_LIST, else the visible GPUs, else a default."""
    requested = os.environ.get("TORCH_CUDA_ARCH_LIST", "").strip()
    if requested and requested != "native":
        return requested
    import torch

    capabilities = sorted({torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())})
    if capabilities:
        return ";".join(f"{major}.{minor}" for major, minor in capabilities) + "+PTX"
    arch_list = default_cuda_arch_list()
    logger.warning(
        "TORCH_CUDA_ARCH_LIST is not set and no GPU is visible: compiling for %s (slow); set e.g. "
        "TORCH_CUDA_ARCH_LIST=9.0 to build for one architecture", arch_list
    )
    return arch_list


def write_build_info_header(directory: Path, cuda_arch_list: str) -> Path:
    """Write the generated header recording the build's architecture list and torch version; returns its dir."""
    import torch

    directory.mkdir(parents=True, exist_ok=True)
    header = directory / BUILD_INFO_HEADER
    content = (
        "// Generated by models/ops/build.py; do not edit.\n"
        "#pragma once\n"
        f"#define MSDA_BUILD_CUDA_ARCH_LIST {_c_string(cuda_arch_list)}\n"
        f"#define MSDA_BUILD_TORCH_VERSION {_c_string(torch.__version__)}\n"
    )
    if not header.is_file() or header.read_text() != content:
        header.write_text(content)
    return directory


def _c_string(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9 .;+_\-]*", text):
        raise ValueError(f"unexpected characters in build setting {text!r}")
    return f'"{text}"'


def source_files(relative_to: Optional[Path] = None) -> List[str]:
    """C++/CUDA sources of the extension (paths relative to ``relative_to`` when given)."""
    sources = [SOURCE_DIR / "bindings.cpp", SOURCE_DIR / "cpu" / "ms_deform_attn_cpu.cpp",
               SOURCE_DIR / "cuda" / "ms_deform_attn_cuda.cu"]
    if relative_to is not None:
        return [os.path.relpath(path, relative_to) for path in sources]
    return [str(path) for path in sources]


def compile_args() -> Dict[str, List[str]]:
    """Extra compiler flags for the host compiler (``cxx``) and nvcc."""
    return {"cxx": ["-O3", "-DWITH_CUDA"], "nvcc": ["-O3", "-DWITH_CUDA"]}


def default_jit_build_dir(cuda_arch_list: str) -> Path:
    """Cache directory of JIT builds: $RVOS_MSDA_BUILD_DIR, else $XDG_CACHE_HOME (or ~/.cache)/rvos/msda/<key>."""
    import torch

    if os.environ.get("RVOS_MSDA_BUILD_DIR"):
        return Path(os.environ["RVOS_MSDA_BUILD_DIR"])
    cache_root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    key = re.sub(r"[^A-Za-z0-9.]+", "_", f"torch{torch.__version__}-cuda{torch.version.cuda}-sm{cuda_arch_list}")
    return cache_root / "rvos" / "msda" / key


def load_jit(build_dir: Optional[Path] = None, verbose: bool = False):
    """Compile (first call, with ninja) or reuse the cached JIT build, and return the loaded module."""
    ensure_cuda_home()
    cuda_arch_list = resolve_cuda_arch_list()
    build_dir = Path(build_dir) if build_dir is not None else default_jit_build_dir(cuda_arch_list)
    build_dir.mkdir(parents=True, exist_ok=True)
    header_dir = write_build_info_header(build_dir / "generated", cuda_arch_list)
    from torch.utils.cpp_extension import load

    flags = compile_args()
    previous = os.environ.get("TORCH_CUDA_ARCH_LIST")
    os.environ["TORCH_CUDA_ARCH_LIST"] = cuda_arch_list
    try:
        return load(
            name=JIT_MODULE_NAME,
            sources=source_files(),
            extra_include_paths=[str(header_dir)],
            extra_cflags=flags["cxx"],
            extra_cuda_cflags=flags["nvcc"],
            build_directory=str(build_dir),
            with_cuda=True,
            verbose=verbose,
        )
    finally:
        if previous is None:
            os.environ.pop("TORCH_CUDA_ARCH_LIST", None)
        else:
            os.environ["TORCH_CUDA_ARCH_LIST"] = previous


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="JIT-compile the MultiScaleDeformableAttention CUDA extension.")
    parser.add_argument("--build-dir", type=Path, default=None,
                        help="build/cache directory (default: $RVOS_MSDA_BUILD_DIR or ~/.cache/rvos/msda/<key>)")
    parser.add_argument("--verbose", action="store_true", help="show the compiler commands")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    module = load_jit(args.build_dir, verbose=args.verbose)
    logger.info("built %s", module.__file__)
    logger.info("build info: %s", dict(module.build_info()))
    logger.info("use it with RVOS_MSDA_JIT=1 (same TORCH_CUDA_ARCH_LIST / RVOS_MSDA_BUILD_DIR) or build "
                "ahead of time with `pip install -e . --no-build-isolation`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
