#!/bin/sh
# Both IDO stages on the embedded default (scikit-learn digits, CPU, a few minutes):
# stage 1, then stage 2 with one global BMM and with class-wise BMMs.
#
#   sh sh/digits.sh [more arguments for every stage, e.g. --seed 1 --output_dir runs/digits]
set -e
cd "$(dirname "$0")/.."
LOG_DIR=${LOG_DIR:-logs}
mkdir -p "$LOG_DIR"
. sh/common.sh
run "$LOG_DIR/digits_stage1.log" python stage_1.py "$@"
run "$LOG_DIR/digits_stage2_global.log" python stage_2.py "$@"
run "$LOG_DIR/digits_stage2_class.log" python stage_2_class.py "$@"
grep -h "last acc" "$LOG_DIR"/digits_stage2_*.log
