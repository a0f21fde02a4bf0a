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
#
# Preemption: SIGTERM or SIGUSR1 sent to this script, or to all of its processes (as SLURM does), makes every rank
# save checkpoint.pth at its next optimiser step and this script exit with 124 (util/preemption.py
# REQUEUE_EXIT_CODE), whatever torchrun's own status. torchrun runs with both signals ignored and not handled
# (--signals-to-handle): it would otherwise die of SIGUSR1 or SIGKILL the workers 30 s after a SIGTERM, maybe in the
# middle of their save; the signal reaches the workers directly, or from this script. main.py records it from the
# start of a training run (one received while it builds the model stops the run after its first step). A worker
# still importing, before main.py handles the signal, ignores it: so the script repeats it to the workers every
# second until torchrun has exited (a repeated signal is only recorded, even during the save).
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
REQUEUE_EXIT_CODE=124
preempted=""
launcher=""
repeater=""
forward() {  # $1: the signal; to the workers (torchrun's children), which save and stop
    preempted="$1"
    if [ -z "$launcher" ]; then return 0; fi
    pkill "-$1" -P "$launcher" 2> /dev/null || true
    if [ -z "$repeater" ]; then
        (
            trap '' TERM USR1
            while kill -0 "$launcher" 2> /dev/null; do
                sleep 1
                pkill "-$1" -P "$launcher" 2> /dev/null || true
            done
        ) > /dev/null 2>&1 &
        repeater=$!
    fi
}
trap 'forward TERM' TERM
trap 'forward USR1' USR1
(
    trap '' TERM USR1  # inherited as ignored by torchrun; main.py installs its own handlers in the workers
    exec torchrun --signals-to-handle SIGINT,SIGHUP,SIGQUIT "${rendezvous[@]}" --nproc_per_node "$nproc" \
        main.py --config "$config" --resume auto "$@"
) &
launcher=$!
if [ -n "$preempted" ]; then forward "$preempted"; fi  # a signal that came before torchrun was started
status=0
while true; do  # a trapped signal interrupts wait: wait again until torchrun has exited
    wait "$launcher" && status=0 || status=$?
    kill -0 "$launcher" 2> /dev/null || break
done
if [ -n "$repeater" ]; then kill -KILL "$repeater" 2> /dev/null || true; fi
if [ -n "$preempted" ] && [ "$status" -ne 0 ]; then
    echo "training stopped by SIG$preempted (torchrun status $status): checkpoint.pth holds the stop; exit $REQUEUE_EXIT_CODE" >&2
    exit "$REQUEUE_EXIT_CODE"
fi
exit "$status"
