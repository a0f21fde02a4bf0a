#!/usr/bin/env bash
# SgMg's Ref-YouTube-VOS recipe (the original scripts/dist_train_ytvos_videoswin{,b}.sh): stage 1 pretrains on
# RefCOCO/+/g (configs/sgmg/video_swin_<size>_refcoco_pretrain.yaml), stage 2 fine-tunes on Ref-YouTube-VOS
# from stage 1's last checkpoint (configs/sgmg/video_swin_<size>_ytvos.yaml).
#
#   GPUS=2 scripts/train_sgmg_ytvos.sh t|b [main.py options for both stages, e.g. --scale_lr]
#
# The recipes' learning rates are those of the original 2-GPU runs: with another GPU count add --scale_lr.
# Both stages keep their own --output_dir (stage 2 reads stage 1's checkpoint0010.pth from it).
set -euo pipefail
cd "$(dirname "$0")/.."
size="${1:-}"
if [[ "$size" != "t" && "$size" != "b" ]]; then
    echo "usage: $0 t|b [main.py options]  (Video-Swin-T or Video-Swin-B)" >&2
    exit 2
fi
shift
gpus="${GPUS:-2}"
for stage in refcoco_pretrain ytvos; do
    torchrun --standalone --nproc_per_node "$gpus" main.py --config "configs/sgmg/video_swin_${size}_${stage}.yaml" "$@"
done
