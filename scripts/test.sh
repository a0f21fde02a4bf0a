#!/usr/bin/env bash
# Set up the environment (scripts/setup_env.sh) and run the test suite; extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
. .venv/bin/activate
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
python -m pytest tests -q -ra "$@"
