#!/usr/bin/env bash
# The whole job end to end on a fresh machine, CPU only, in about 10 minutes:
# set-up, a small synthetic Ref-YouTube-VOS, a few minutes of training of the tiny model, inference on the
# held-out split, the submission zip (written and checked), an offline score, and an overlay video.
# Everything goes under $WORK (default output/quickstart); a rerun continues where it stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
. .venv/bin/activate
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"

WORK="${WORK:-output/quickstart}"
EPOCHS="${EPOCHS:-6}"
DATA="$WORK/data/ref-youtube-vos"
TEXT_ENCODER="$WORK/tiny_text_encoder"
TRAIN="$WORK/train"
PRED="$WORK/inference"
VIDEO="$WORK/data/video"
CONFIG=configs/tiny/referformer_tiny_synthetic.yaml
# The tiny model trains on the synthetic frames at their own size (96 px short side): infer at that size too.
TEST_SIZE=(--test_short_side 96)
step() { echo; echo "==> $*"; }

step "tiny text encoder (random RoBERTa + BPE tokenizer) -> $TEXT_ENCODER"
[ -f "$TEXT_ENCODER/model.safetensors" ] || python tools/make_tiny_text_encoder.py --out "$TEXT_ENCODER"

step "synthetic Ref-YouTube-VOS -> $DATA"
[ -f "$DATA/synthetic_meta.json" ] || python tools/make_synthetic_data.py --dataset ytvos --root "$DATA" --seed 0 \
    --num_videos 12 --num_valid_videos 4
python tools/check_dataset.py --dataset_file ytvos --ytvos_path "$DATA"

step "training the tiny model for $EPOCHS epochs -> $TRAIN"
python main.py --config "$CONFIG" --text_encoder "$TEXT_ENCODER" --ytvos_path "$DATA" --output_dir "$TRAIN" \
    --epochs "$EPOCHS" --lr_drop "$((EPOCHS - 1))" --num_workers 1 --resume auto

step "inference on the valid split (shared backbone) + submission zip -> $PRED"
python inference.py --dataset_file ytvos --ytvos_path "$DATA" --resume "$TRAIN/checkpoint.pth" \
    --text_encoder "$TEXT_ENCODER" --device cpu --output_dir "$PRED" "${TEST_SIZE[@]}"
ZIP="$PRED/submission_ytvos_valid.zip"

step "checking the submission zip"
python tools/check_submission.py "$ZIP" --dataset_file ytvos --ytvos_path "$DATA"

step "offline score against the held-out ground truth"
python tools/evaluate.py --protocol ytvos --meta "$DATA/meta_expressions/valid/meta_expressions.json" \
    --gt "$DATA/_synthetic_gt/valid/Annotations" --results "$PRED/valid" --output "$PRED/scores.json"

step "your own video: a synthetic mp4 and two sentences -> masks and an overlay"
[ -f "$VIDEO/synthetic_video.mp4" ] || python tools/make_synthetic_data.py --dataset video --root "$VIDEO" --seed 0
mapfile -t SENTENCES < <(python -c "import json,sys; [print(e['exp']) for e in json.load(open(sys.argv[1]))['expressions']]" \
    "$VIDEO/synthetic_video.json")
python inference.py --video "$VIDEO/synthetic_video.mp4" --text "${SENTENCES[0]}" --text "${SENTENCES[1]}" \
    --resume "$TRAIN/checkpoint.pth" --text_encoder "$TEXT_ENCODER" --device cpu --output_dir "$WORK/video_inference" \
    "${TEST_SIZE[@]}"

step "artefacts"
cat <<EOT
  synthetic dataset     $DATA
  trained checkpoint    $TRAIN/checkpoint.pth   (log: $TRAIN/log.txt, TensorBoard: $TRAIN/tb)
  predicted masks       $PRED/valid/<video>/<exp_id>/<frame>.png
  submission zip        $ZIP   (checked)
  offline scores        $PRED/scores.json
  own-video masks       $WORK/video_inference/   (overlay: $WORK/video_inference/synthetic_video_overlay.mp4)
EOT
