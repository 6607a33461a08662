#!/usr/bin/env bash
# Table 2 of the Funnel paper (ResNet-50 on ImageNet, batch 4096, 100 epochs), end to end under the tuning protocol
# the paper's way (configs/tuning/table2_resnet50.yaml): Funneled Momentum (eta 0.1) over the paper's gamma grid
# around its best (1e-4, 5e-3), 9 runs at the selection seed, chosen on VAL_SIZE (default 50,000) training images
# held out; the baselines at the paper's settings (the Goyal et al. schedule for the scheduled one); 4 arms x 5
# seeds; then results/resnet50_imagenet.
# Compute: 29 runs of 100 epochs, about 8 hours each on 32 GPUs. Data: ImageNet in the ImageFolder layout.
# Usage: LAUNCH="torchrun --nnodes=4 --nproc_per_node=8 --rdzv_backend=c10d --rdzv_endpoint=HOST:29500" \
#          bash scripts/reproduce_resnet50_imagenet.sh /path/to/imagenet
source "$(dirname "$0")/reproduce_common.sh"
root=${1:?usage: reproduce_resnet50_imagenet.sh /path/to/imagenet}
dir=$RUNS/resnet50_imagenet
out=$RESULTS/resnet50_imagenet
EXTRA+=("dataset.root=$root")
study configs/tuning/table2_resnet50.yaml "$dir" --tuning-common "dataset.val_size=${VAL_SIZE:-50000}"
"$PY" -m experiments.table2_resnet50 "$dir" --out "$out"
