#!/bin/sh
# IDO on Tiny-ImageNet-200: the README grid (sym 20 %, sym 50 %, idn 40 %) for one backbone.
#
#   sh sh/tiny_imagenet.sh [BACKBONE] [more arguments for both stages ...]
#   sh sh/tiny_imagenet.sh ViT-B --set data_path=/data/tiny-imagenet-200 --output_dir runs/tiny
#   sh sh/tiny_imagenet.sh resnet50 --seed 1 --output_dir runs/paper/seed1   # a seed for benchmarks/paper_tables.py
#
# BACKBONE (default resnet50) is passed to both stages, so stage 2 starts from the stage-1 base model
# of the same network (official bug IDO-B12 fixed).  Each stage of each setting writes its own log,
# logs/tiny_imagenet_{backbone}_{mode}_{ratio}_stage{1,2}.log (LOG_DIR to change).  STAGE2 picks the
# stage-2 program: stage_2_class.py (class-wise BMM, default) or stage_2.py (one global BMM).
set -e
cd "$(dirname "$0")/.."
BACKBONE=${1:-resnet50}
[ $# -gt 0 ] && shift
STAGE2=${STAGE2:-stage_2_class.py}
LOG_DIR=${LOG_DIR:-logs}
mkdir -p "$LOG_DIR"

. sh/common.sh

for setting in sym:0.2 sym:0.5 idn:0.4; do
    mode=${setting%%:*}
    ratio=${setting##*:}
    name=tiny_imagenet_${BACKBONE}_${mode}_${ratio}
    run "$LOG_DIR/${name}_stage1.log" python stage_1.py --config config/stage1/tiny_imagenet.yaml \
        --backbone "$BACKBONE" --noise_mode "$mode" --noise_ratio "$ratio" "$@"
    run "$LOG_DIR/${name}_stage2.log" python "$STAGE2" --config config/stage2/tiny_imagenet.yaml \
        --backbone "$BACKBONE" --noise_mode "$mode" --noise_ratio "$ratio" "$@"
done
