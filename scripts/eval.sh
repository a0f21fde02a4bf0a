#!/usr/bin/env bash
# Evaluate a checkpoint on A2D-Sentences, JHMDB-Sentences or RefCOCO/+/g (main.py --eval) with torchrun.
#
#   scripts/eval.sh CONFIG CHECKPOINT [NPROC] [main.py options...]
#   scripts/eval.sh configs/referformer/video_swin_t_p4w7_a2d.yaml a2d_video_swin_tiny.pth 8
#   scripts/eval.sh configs/referformer/video_swin_t_p4w7_a2d.yaml a2d_video_swin_tiny.pth 8 --dataset_file jhmdb
#
# Ref-YouTube-VOS, Ref-DAVIS17 and MeViS are predicted with inference.py (docs/INFERENCE.md).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 2 ] || [ ! -f "$1" ] || [ ! -f "$2" ]; then
    echo "usage: $0 CONFIG CHECKPOINT [NPROC] [main.py options...]" >&2
    exit 2
fi
config="$1"
checkpoint="$2"
shift 2
if [ $# -ge 1 ] && [[ "$1" =~ ^[0-9]+$ ]]; then
    nproc="$1"
    shift
else
    nproc=1
fi
exec torchrun --standalone --nproc_per_node "$nproc" main.py --config "$config" --eval --resume "$checkpoint" "$@"
