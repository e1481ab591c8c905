#!/bin/sh
# Both IDO stages on the embedded default (scikit-learn digits, CPU, a few minutes):
# stage 1, then stage 2 with one global BMM and with class-wise BMMs.
#
#   sh sh/digits.sh [more arguments for every stage, e.g. --seed 1 --output_dir runs/digits]
set -e
cd "$(dirname "$0")/.."
LOG_DIR=${LOG_DIR:-logs}
mkdir -p "$LOG_DIR"
python stage_1.py "$@" > "$LOG_DIR/digits_stage1.log" 2>&1 || { tail -n 20 "$LOG_DIR/digits_stage1.log"; exit 1; }
python stage_2.py "$@" > "$LOG_DIR/digits_stage2_global.log" 2>&1 || { tail -n 20 "$LOG_DIR/digits_stage2_global.log"; exit 1; }
python stage_2_class.py "$@" > "$LOG_DIR/digits_stage2_class.log" 2>&1 || { tail -n 20 "$LOG_DIR/digits_stage2_class.log"; exit 1; }
grep -h "last acc" "$LOG_DIR"/digits_stage2_*.log
