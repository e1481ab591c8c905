#!/bin/sh
# The own-data demo, nothing to download: scikit-learn's digits written as PNG files into an imagefolder
# tree with 20 % of the training files in a wrong class folder (listed in misplaced.csv); clean_labels.py
# (IDO stage 1, then class-wise stage 2) on it; the top suspects, the precision / recall of the flags
# against the misplaced files and the error rate of the labels after taking the predicted label for every
# flag; then predict.py with the cleaned model on the test folder.  CPU: about 11 minutes on a 2-core
# machine (docs/own_data.md; 27 minutes on one shared with other jobs).
#
#   sh sh/own_data.sh [more arguments for clean_labels.py, e.g. --seed 1 or --acto]
#   DEMO_DIR=runs/own_data sh sh/own_data.sh      # where the tree and every output go (default demo/own_data)
set -e
cd "$(dirname "$0")/.."
DEMO_DIR=${DEMO_DIR:-demo/own_data}
LOG_DIR=${LOG_DIR:-logs}
mkdir -p "$LOG_DIR"
. sh/common.sh
TREE="$DEMO_DIR/digits"
OUT="$DEMO_DIR/out"
# the digits default's model and optimiser (config/stage1/digits.yaml) on the imagefolder configs
FAST="--backbone test_resnet --set pretrained=false --resolution 32 --set hflip=false --set num_workers=0
      --batch_size 64 --set optimizer=adamw --set lr=0.003 --set weight_decay=0.0001"
[ -f "$TREE/misplaced.csv" ] || python -m dataloader.digits_tree write "$TREE" --misplaced 0.2
# shellcheck disable=SC2086
set -- "$TREE" --output_dir "$OUT" --epochs 20 --stage2_epochs 5 $FAST "$@"
# what the command writes, from its own definition (utils/training/outputs.py), not rebuilt here
OUTPUTS=$(python clean_labels.py "$@" --outputs)  # "name<TAB>path" lines
output() { printf '%s\n' "$OUTPUTS" | awk -F '\t' -v name="$1" '$1 == name { print $2 }'; }
SAMPLES=$(output stage2.samples)
MODEL=$(output stage2.model)
REVIEW=$(output stage2.review)
run "$LOG_DIR/own_data_clean_labels.log" python clean_labels.py "$@"
grep -h "last acc" "$LOG_DIR/own_data_clean_labels.log"
python -m dataloader.digits_tree score "$TREE" "$SAMPLES"
run "$LOG_DIR/own_data_predict.log" python predict.py --model "$MODEL" "$TREE/test" --out "$OUT/predictions.csv"
echo "predictions: $OUT/predictions.csv"
echo "review: open $REVIEW in a browser, decide, export corrected_labels.csv"
echo "retrain: python clean_labels.py corrected_labels.csv --output_dir $OUT/corrected $FAST" | tr -s ' \n' ' '
echo
