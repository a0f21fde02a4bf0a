#!/usr/bin/env bash
# The MeViS-2024 solution: MUTR Swin-L fine-tuned on MeViS (configs/mevis/mutr_swin_l_mevis2024.yaml).
#   scripts/train_mevis2024.sh OUTPUT_DIR MUTR_SWIN_L_JOINT_CHECKPOINT [main.py options]
# GPUS (default 4, the challenge run) processes on this node.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 2 ]; then
    echo "usage: $0 OUTPUT_DIR MUTR_SWIN_L_JOINT_CHECKPOINT [main.py options]" >&2
    exit 2
fi
torchrun --nproc_per_node "${GPUS:-4}" main.py --config configs/mevis/mutr_swin_l_mevis2024.yaml \
    --output_dir "$1" --pretrained_weights "$2" "${@:3}"
