#!/bin/sh
# Every cell of the IDO CIFAR-100 table: ResNet-50 and ViT-B/16 x {sym 0.2, sym 0.4, sym 0.6,
# asym 0.4, idn 0.4}, stage 1 then stage 2 with the same backbone (official bug IDO-B12 fixed).
#
#   sh sh/cifar100.sh [more arguments for both stages ...]
#   CIFAR100_PATH=/data/cifar-100 BACKBONES="ViT-B" sh sh/cifar100.sh --output_dir runs/c100
#   LOG_DIR=runs/paper/seed1/logs sh sh/cifar100.sh --seed 1 --output_dir runs/paper/seed1
#       (one seed of the layout benchmarks/paper_tables.py collects: docs/benchmarks.md)
#
# STAGE2 picks the stage-2 program: stage_2_class.py (class-wise BMM, default) or stage_2.py
# (one global BMM).  One log per stage and setting: logs/cifar100_{backbone}_{mode}_{ratio}_stage{1,2}.log.
set -e
cd "$(dirname "$0")/.."
STAGE2=${STAGE2:-stage_2_class.py}
LOG_DIR=${LOG_DIR:-logs}
BACKBONES=${BACKBONES:-"resnet50 ViT-B"}
SETTINGS=${SETTINGS:-"sym:0.2 sym:0.4 sym:0.6 asym:0.4 idn:0.4"}
DATA=""
[ -n "$CIFAR100_PATH" ] && DATA="--set data_path=$CIFAR100_PATH"
mkdir -p "$LOG_DIR"

. sh/common.sh

for backbone in $BACKBONES; do
    for setting in $SETTINGS; do
        mode=${setting%%:*}
        ratio=${setting##*:}
        name="$LOG_DIR/cifar100_${backbone}_${mode}_${ratio}"
        run "${name}_stage1.log" python stage_1.py --config config/stage1/cifar100.yaml --backbone "$backbone" \
            --noise_mode "$mode" --noise_ratio "$ratio" $DATA "$@"
        run "${name}_stage2.log" python "$STAGE2" --config config/stage2/cifar100.yaml --backbone "$backbone" \
            --noise_mode "$mode" --noise_ratio "$ratio" $DATA "$@"
    done
done
