#!/usr/bin/env bash
# Table 2 of the Funnel paper (ResNet-50 on ImageNet, batch 4096, 100 epochs), end to end: (1) Funneled Momentum
# (eta 0.1) over a gamma grid around the paper's best (1e-4, 5e-3), 9 runs, seed 0, chosen on 50,000 held-out
# training images; (2) 4 arms x seeds 0-4 with the Goyal et al. schedule for the baseline; (3) the table.
# Compute: 29 runs of 100 epochs, about 8 hours each on 32 GPUs. Data: ImageNet in the ImageFolder layout.
# VAL_SIZE (default 50000) training images are held out for the sweep.
# Usage: LAUNCH="torchrun --nnodes=4 --nproc_per_node=8 --rdzv_backend=c10d --rdzv_endpoint=HOST:29500" \
#          bash scripts/reproduce_resnet50_imagenet.sh /path/to/imagenet
source "$(dirname "$0")/reproduce_common.sh"
root=${1:?usage: reproduce_resnet50_imagenet.sh /path/to/imagenet}
dir=$RUNS/resnet50_imagenet
out=$RESULTS/resnet50_imagenet
train experiment=resnet50_imagenet_sweep arm=imagenet_funnel dataset.root="$root" dataset.val_size="${VAL_SIZE:-50000}" hydra.sweep.dir="$dir/sweep_gammas"
read -r -a GAMMAS <<< "$(choose "$dir/sweep_gammas" val/top1 final "$out/selection_funnel")"
for arm in imagenet_momentum_schedule imagenet_momentum imagenet_adagrad_ema; do
  train experiment=resnet50_imagenet arm=$arm seed="$SEEDS" dataset.root="$root" hydra.sweep.dir="$dir/finals/$arm"
done
train experiment=resnet50_imagenet arm=imagenet_funnel seed="$SEEDS" dataset.root="$root" "${GAMMAS[@]}" \
  hydra.sweep.dir="$dir/finals/imagenet_funnel"
report table2_resnet50 "$dir" "$out"
