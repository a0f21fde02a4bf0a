#!/usr/bin/env bash
# Create (or reuse) the virtual environment .venv with pinned torch, the project requirements and the optional
# extras (requirements-extras.txt, and Debian's chromium for the browser tests; RVOS_SKIP_EXTRAS=1 skips them),
# and build the MultiScaleDeformableAttention CUDA extension when a CUDA toolkit is present.
set -euo pipefail
cd "$(dirname "$0")/.."
TORCH_VERSION="${TORCH_VERSION:-2.14.1}"
TORCHVISION_VERSION="${TORCHVISION_VERSION:-0.29.1}"
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
. .venv/bin/activate
stamp=".venv/.rvos-setup-$(cat requirements.txt requirements-extras.txt | sha1sum | cut -c1-12)-torch${TORCH_VERSION}"
if [ ! -f "$stamp" ]; then
    python -m pip install -q --upgrade pip
    python -m pip install -q "torch==${TORCH_VERSION}" "torchvision==${TORCHVISION_VERSION}"
    python -m pip install -q -r requirements.txt
    if [ "${RVOS_SKIP_EXTRAS:-0}" != "1" ]; then
        # sam2 is an sdist whose build needs torch: built against the venv's torch (no build isolation, which would
        # fetch another torch) and without its optional CUDA extension (SAM2_BUILD_CUDA=0).
        grep -v '^sam2==' requirements-extras.txt > .venv/requirements-extras-no-sam2.txt
        python -m pip install -q -r .venv/requirements-extras-no-sam2.txt "torch==${TORCH_VERSION}" "torchvision==${TORCHVISION_VERSION}"
        SAM2_BUILD_CUDA=0 python -m pip install -q --no-build-isolation $(grep '^sam2==' requirements-extras.txt) \
            "torch==${TORCH_VERSION}" "torchvision==${TORCHVISION_VERSION}"
    fi
    touch "$stamp"
fi
# The browser tests (demo, HTML report) drive Debian's chromium through playwright: install it where it is missing.
if [ "${RVOS_SKIP_EXTRAS:-0}" != "1" ] && [ -z "${RVOS_CHROMIUM:-}" ] && ! command -v chromium >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1; then
        as_root=""
        if [ "$(id -u)" != "0" ]; then as_root="sudo"; fi
        $as_root apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $as_root apt-get install -y -qq chromium > .venv/chromium_install.log
    else
        echo "SKIP browser tests: chromium is not installed and there is no apt-get to install it" \
             "(install Debian's chromium, or set RVOS_CHROMIUM to a Chromium binary)" >&2
    fi
fi
if [ -z "${CUDA_HOME:-}" ] && [ -x /usr/local/cuda/bin/nvcc ]; then
    export CUDA_HOME=/usr/local/cuda
fi
if [ -n "${CUDA_HOME:-}" ] && [ "${RVOS_SKIP_OP_BUILD:-0}" != "1" ]; then
    export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-8.0;9.0}"
    python setup.py -q build_ext --inplace > .venv/op_build.log 2>&1 \
        || { echo "warning: building the CUDA op failed (see .venv/op_build.log); the PyTorch path will be used" >&2; }
fi
