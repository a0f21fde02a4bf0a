#!/usr/bin/env bash
# Before a GPU session, where pip works: gather into .gpu_check/ (.gitignore has it; carry it to the GPU machine)
# what a bare GPU machine lacks for scripts/gpu_check.sh:
#   - wheels of the packages its image does not have (GPU_CHECK_PACKAGES, default "pycocotools==2.0.11"),
#     for its Python (GPU_CHECK_PYTHON, default 3.12) on x86-64 Linux;
#   - the reference data the CUDA tests of tests/test_msdeform.py read ($RVOS_REFERENCE_DIR or
#     ../shared/reference: its msdeform/ folder, 1.2 MB).
# Then on the GPU machine: `bash scripts/gpu_check.sh`, carrying .gpu_check.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] && PY=.venv/bin/python
packages="${GPU_CHECK_PACKAGES:-pycocotools==2.0.11}"
python_version="${GPU_CHECK_PYTHON:-3.12}"
reference="${RVOS_REFERENCE_DIR:-../shared/reference}"

rm -rf .gpu_check
mkdir -p .gpu_check/wheels .gpu_check/reference

# shellcheck disable=SC2086
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$python_version" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .gpu_check/wheels $packages
cp -r "$reference/msdeform" .gpu_check/reference/
du -sh .gpu_check
echo "ready: carry .gpu_check and run \`bash scripts/gpu_check.sh\` on the GPU machine (its \$OUT gets the results)"
