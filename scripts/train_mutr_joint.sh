#!/usr/bin/env bash
# MUTR joint RefCOCO/+/g + Ref-YouTube-VOS training (configs/mutr/<backbone>_joint.yaml).
#   scripts/train_mutr_joint.sh swin_l_p4w7|video_swin_b_p4w7 OUTPUT_DIR BACKBONE_WEIGHTS [main.py options]
# BACKBONE_WEIGHTS: the ImageNet Swin-L / Kinetics Video-Swin-B file. GPUS (default 8) processes on this
# node; with fewer GPUs pass e.g. --accumulate to keep the recipe's global batch (8 x 2 clips).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 3 ]; then
    echo "usage: $0 swin_l_p4w7|video_swin_b_p4w7 OUTPUT_DIR BACKBONE_WEIGHTS [main.py options]" >&2
    exit 2
fi
config="configs/mutr/$1_joint.yaml"
if [ ! -f "$config" ]; then
    echo "no recipe $config (backbones: swin_l_p4w7, video_swin_b_p4w7)" >&2
    exit 2
fi
torchrun --nproc_per_node "${GPUS:-8}" main.py --config "$config" --output_dir "$2" \
    --backbone_pretrained "$3" "${@:4}"
