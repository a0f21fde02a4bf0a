#!/usr/bin/env bash
# SgMg's A2D-Sentences recipe (the original scripts/dist_train_a2d_videoswinb.sh), Video-Swin-B, from the RefCOCO
# pretraining of configs/sgmg/video_swin_b_refcoco_pretrain.yaml (or pass --pretrained_weights FILE).
#
#   GPUS=2 scripts/train_sgmg_a2d.sh [main.py options, e.g. --scale_lr]
#
# JHMDB-Sentences is then evaluated with: python main.py --config configs/sgmg/video_swin_b_a2d.yaml
#   --dataset_file jhmdb --eval --resume output/sgmg_video_swin_b_p4w7_a2d/checkpoint.pth
set -euo pipefail
cd "$(dirname "$0")/.."
torchrun --standalone --nproc_per_node "${GPUS:-2}" main.py --config configs/sgmg/video_swin_b_a2d.yaml "$@"
