#!/usr/bin/env bash
# Train a recipe with torchrun on this machine (or one node of several).
#
#   scripts/train.sh CONFIG [NPROC] [main.py options...]
#   scripts/train.sh configs/referformer/video_swin_t_p4w7_ytvos.yaml 8
#   scripts/train.sh configs/referformer/video_swin_b_p4w7_ytvos.yaml 4 --accumulate 2 --output_dir out/vswin_b
#
# NPROC defaults to the number of visible GPUs (1 without any). The run continues from
# <output_dir>/checkpoint.pth when one exists (--resume auto), so re-running the same command after a crash or
# a preemption picks up where it stopped; pass --resume FILE to choose another checkpoint.
# Several nodes: set NNODES, NODE_RANK, MASTER_ADDR and MASTER_PORT on every node.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 1 ] || [ ! -f "$1" ]; then
    echo "usage: $0 CONFIG [NPROC] [main.py options...]  (CONFIG: a file under configs/)" >&2
    exit 2
fi
config="$1"
shift
if [ $# -ge 1 ] && [[ "$1" =~ ^[0-9]+$ ]]; then
    nproc="$1"
    shift
elif command -v nvidia-smi > /dev/null 2>&1 && nvidia-smi -L > /dev/null 2>&1; then
    nproc="$(nvidia-smi -L | wc -l)"
else
    nproc=1
fi
nnodes="${NNODES:-1}"
if [ "$nnodes" -gt 1 ]; then
    rendezvous=(--nnodes "$nnodes" --node_rank "${NODE_RANK:?set NODE_RANK}" \
                --master_addr "${MASTER_ADDR:?set MASTER_ADDR}" --master_port "${MASTER_PORT:-29500}")
else
    rendezvous=(--standalone)
fi
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-4}"
exec torchrun "${rendezvous[@]}" --nproc_per_node "$nproc" main.py --config "$config" --resume auto "$@"
