#!/bin/sh
# The own-data demo, nothing to download: scikit-learn's digits written as PNG files into an imagefolder
# tree with 20 % of the training files in a wrong class folder (listed in misplaced.csv); IDO stage 1 and
# stage_2_class.py on it; the top suspects and the precision / recall of the flags against the misplaced
# files; then predict.py with the cleaned model on the test folder.  CPU, a few minutes.
#
#   sh sh/own_data.sh [more arguments for both stages, e.g. --seed 1]
#   DEMO_DIR=runs/own_data sh sh/own_data.sh      # where the tree and every output go (default demo/own_data)
set -e
cd "$(dirname "$0")/.."
DEMO_DIR=${DEMO_DIR:-demo/own_data}
LOG_DIR=${LOG_DIR:-logs}
mkdir -p "$LOG_DIR"
. sh/common.sh
TREE="$DEMO_DIR/digits"
OUT="$DEMO_DIR/out"
TAG=test_resnet_scratch_imagefolder_real_0
# the digits default's model and optimiser (config/stage1/digits.yaml) on the imagefolder configs
FAST="--backbone test_resnet --set pretrained=false --set resolution=32 --set hflip=false --set num_workers=0
      --batch_size 64 --set optimizer=adamw --set lr=0.003 --set weight_decay=0.0001"
[ -f "$TREE/misplaced.csv" ] || python -m dataloader.digits_tree write "$TREE" --misplaced 0.2
# shellcheck disable=SC2086
run "$LOG_DIR/own_data_stage1.log" python stage_1.py --config config/stage1/imagefolder.yaml \
    --set data_path="$TREE" --output_dir "$OUT" --epochs 20 $FAST "$@"
# shellcheck disable=SC2086
run "$LOG_DIR/own_data_stage2_class.log" python stage_2_class.py --config config/stage2/imagefolder.yaml \
    --set data_path="$TREE" --output_dir "$OUT" --epochs 5 $FAST "$@"
grep -h "last acc" "$LOG_DIR/own_data_stage2_class.log"
python -m dataloader.digits_tree score "$TREE" "$OUT/stage2/${TAG}_class_samples.csv"
run "$LOG_DIR/own_data_predict.log" python predict.py --model "$OUT/stage2/${TAG}_class_model.pt" "$TREE/test" \
    --out "$OUT/predictions.csv"
echo "report: $OUT/stage2/${TAG}_class_samples.csv, _summary.json, _suspects.png; predictions: $OUT/predictions.csv"
