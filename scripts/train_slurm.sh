#!/usr/bin/env bash
# Train a recipe under SLURM, one task per GPU (main.py reads SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID and
# takes the master address from the node list). Submit it with sbatch:
#
#   sbatch --nodes 1 --ntasks-per-node 8 --gpus-per-node 8 --cpus-per-task 8 \
#       scripts/train_slurm.sh configs/referformer/video_swin_b_p4w7_ytvos.yaml [main.py options...]
#
# Preemption: SLURM sends SIGUSR1 to every task 120 s before the time limit (--signal below) and SIGTERM when the
# job is preempted; main.py then finishes the current optimiser step on every rank, saves checkpoint.pth and exits
# with code 124 (util/preemption.py, REQUEUE_EXIT_CODE). On that code this script requeues the job, which continues
# from <output_dir>/checkpoint.pth (--resume auto). Any other failure is not requeued.
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --signal=USR1@120
set -uo pipefail
# sbatch runs a copy of this script from its spool folder: then the repository is the folder it was submitted from.
here="$(cd "$(dirname "$0")/.." && pwd)"
if [ -f "$here/main.py" ]; then cd "$here"; else cd "${SLURM_SUBMIT_DIR:?submit from the repository root}"; fi
REQUEUE_EXIT_CODE=124
if [ $# -lt 1 ] || [ ! -f "$1" ]; then
    echo "usage: $0 CONFIG [main.py options...]  (submitted with sbatch, or inside a SLURM allocation)" >&2
    exit 2
fi
config="$1"
shift
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-${SLURM_CPUS_PER_TASK:-4}}"
# The batch shell itself ignores SIGTERM so that it outlives the tasks and can requeue.
trap '' TERM
srun --kill-on-bad-exit=1 python -u main.py --config "$config" --resume auto "$@"
status=$?
if [ "$status" -eq "$REQUEUE_EXIT_CODE" ] && [ -n "${SLURM_JOB_ID:-}" ]; then
    echo "training stopped for preemption (exit $status): requeueing job $SLURM_JOB_ID" >&2
    scontrol requeue "$SLURM_JOB_ID"
fi
exit "$status"
