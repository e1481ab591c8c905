#!/bin/sh
# IDO on the real-world noisy sets of the README: CIFAR-100N, Clothing1M, mini-WebVision.
#
#   sh sh/realworld.sh [BACKBONE] [more arguments for both stages ...]
#   CLOTHING1M_PATH=/data/clothing1m sh sh/realworld.sh ViT-B --output_dir runs/real
#   sh sh/realworld.sh resnet50 --seed 1 --output_dir runs/paper/seed1   # a seed for benchmarks/paper_tables.py
#
# Data folders (default: the data_path of each config): CIFAR100N_PATH (CIFAR-100 pickles and
# CIFAR-100_human.pt), CLOTHING1M_PATH, WEBVISION_PATH; IMAGENET_VAL_PATH adds the ILSVRC12
# validation accuracy of the same 50 classes to the WebVision runs.  SETS limits the data sets
# (default "cifar100n clothing1m webvision").
#
# BACKBONE (default resnet50) is passed to both stages (official bug IDO-B12 fixed: stage 2 needs the
# stage-1 base model of the same network).  Each stage writes its own log,
# logs/{set}_{backbone}_stage{1,2}.log (LOG_DIR to change).  STAGE2 picks the stage-2 program:
# stage_2_class.py (class-wise BMM, default) or stage_2.py (one global BMM).
set -e
cd "$(dirname "$0")/.."
BACKBONE=${1:-resnet50}
[ $# -gt 0 ] && shift
STAGE2=${STAGE2:-stage_2_class.py}
LOG_DIR=${LOG_DIR:-logs}
SETS=${SETS:-"cifar100n clothing1m webvision"}
mkdir -p "$LOG_DIR"

. sh/common.sh

stage() (  # stage N SET [arguments]: one stage of one data set, with the data folders given above
    n=$1
    set_name=$2
    shift 2
    if [ "$set_name" = webvision ] && [ -n "${IMAGENET_VAL_PATH:-}" ]; then
        set -- --set "imagenet_val_path=$IMAGENET_VAL_PATH" "$@"
    fi
    [ -n "$path" ] && set -- --set "data_path=$path" "$@"
    if [ "$n" = 1 ]; then prog=stage_1.py; else prog=$STAGE2; fi
    run "$LOG_DIR/${set_name}_${BACKBONE}_stage$n.log" python "$prog" --config "config/stage$n/$set_name.yaml" \
        --backbone "$BACKBONE" "$@"
)

for set_name in $SETS; do
    case $set_name in
        cifar100n) path=${CIFAR100N_PATH:-} ;;
        clothing1m) path=${CLOTHING1M_PATH:-} ;;
        webvision) path=${WEBVISION_PATH:-} ;;
        *) echo "unknown data set $set_name (cifar100n, clothing1m, webvision)" >&2; exit 2 ;;
    esac
    stage 1 "$set_name" "$@"
    stage 2 "$set_name" "$@"
done
