#!/usr/bin/env bash
# The GPU check (tools/gpu_check.py): run it from the checkout on a machine lent an NVIDIA GPU; it needs no
# attention and ends within 10 minutes. Without a GPU it exits at once with code 2.
#
# It uses the machine's own Python with PyTorch (.venv/bin/python when that sees the GPU, else python3) and
# creates no environment. A bare GPU machine that cannot download finds in .gpu_check/ what it lacks, gathered
# beforehand by scripts/gpu_check_prepare.sh on a machine with pip: wheels (installed here into a scratch
# folder) and the reference data the CUDA tests read. Each set-up step prints its time; tools/gpu_check.py then
# builds the op and times every check. Results go to $OUT (or output/gpu_check): gpu_check.json,
# gpu_check_rows.md, gpu_check.log; append the rows here with `python tools/gpu_check.py --append-from FILE`.
# Arguments are passed on to tools/gpu_check.py (e.g. --budget 400, --steps op_check op_tests).
set -uo pipefail
cd "$(dirname "$0")/.."
SECONDS=0
say() { echo "[gpu_check.sh ${SECONDS}s] $*"; }

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
    echo "gpu_check: no NVIDIA GPU on this machine (nvidia-smi finds none): nothing to check; run it where a GPU is lent" >&2
    exit 2
fi
say "GPU: $(nvidia-smi -L | head -n 1)"

PY=python3
if [ -x .venv/bin/python ] && .venv/bin/python -c 'import torch, sys; sys.exit(not torch.cuda.is_available())' 2>/dev/null; then
    PY=.venv/bin/python
fi
if ! "$PY" -c 'import torch' 2>/dev/null; then
    echo "gpu_check: $PY has no PyTorch; install it (scripts/setup_env.sh where pip works)" >&2
    exit 1
fi
say "python: $PY ($("$PY" -c 'import sys, torch; print(sys.version.split()[0], "torch", torch.__version__, "CUDA", torch.version.cuda)'))"

if compgen -G ".gpu_check/wheels/*.whl" >/dev/null; then
    site="${TMPDIR:-/tmp}/gpu_check_site"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" .gpu_check/wheels/*.whl \
        || { echo "gpu_check: installing the wheels of .gpu_check/wheels failed" >&2; exit 1; }
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
    say "installed $(ls .gpu_check/wheels/*.whl | wc -l) carried wheel(s) into $site"
fi
missing=$("$PY" - <<'PY'
import importlib.util
modules = ("pycocotools", "transformers", "tokenizers", "timm", "cv2", "h5py", "scipy", "yaml", "tqdm", "einops",
           "safetensors", "PIL", "pytest", "setuptools")
print(" ".join(m for m in modules if importlib.util.find_spec(m) is None))
PY
)
if [ -n "$missing" ]; then
    echo "gpu_check: $PY lacks: $missing. Run scripts/gpu_check_prepare.sh where pip works (GPU_CHECK_PACKAGES names" \
         "the wheels to fetch) and carry .gpu_check to this machine" >&2
    exit 1
fi
say "packages: all present"

if [ -z "${RVOS_REFERENCE_DIR:-}" ] && [ ! -d ../shared/reference ] && [ -d .gpu_check/reference ]; then
    export RVOS_REFERENCE_DIR="$PWD/.gpu_check/reference"
fi
say "reference data: ${RVOS_REFERENCE_DIR:-../shared/reference}"

export PYTHONUNBUFFERED=1
exec "$PY" tools/gpu_check.py "$@"
