#!/usr/bin/env bash
# Train a recipe under SLURM, one task per GPU (main.py reads SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID and
# takes the master address from the node list). Run it inside an allocation, e.g. with sbatch:
#
#   #!/bin/bash
#   #SBATCH --nodes 1 --ntasks-per-node 8 --gpus-per-node 8 --cpus-per-task 8 --requeue
#   scripts/train_slurm.sh configs/referformer/video_swin_b_p4w7_ytvos.yaml [main.py options...]
#
# It continues from <output_dir>/checkpoint.pth when present (--resume auto), so a requeued job resumes.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 1 ] || [ ! -f "$1" ]; then
    echo "usage: $0 CONFIG [main.py options...]  (inside a SLURM allocation)" >&2
    exit 2
fi
config="$1"
shift
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-${SLURM_CPUS_PER_TASK:-4}}"
exec srun --kill-on-bad-exit=1 python -u main.py --config "$config" --resume auto "$@"
