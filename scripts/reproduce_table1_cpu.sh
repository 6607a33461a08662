#!/usr/bin/env bash
# The CPU-scale analogue of Table 1 ("no schedule needed"), end to end: the small CNN on Fashion-MNIST, 3 epochs
# (1,290 steps at batch 128) for every arm. (1) the scheduled Momentum baseline's lr, 4 runs, and Adam's lr,
# 3 runs, seed 0; (2) Funneled Momentum at the baseline's lr and momentum over the paper's gamma grid, 9 runs;
# all chosen on final validation accuracy; (3) 4 arms x seeds 0-4; (4) results/table1_cpu_fashion.
# Compute: 36 runs of ~2 minutes on a 2-core CPU, about 75 minutes.
source "$(dirname "$0")/reproduce_common.sh"
dir=$RUNS/cnn_fashion
out=$RESULTS/table1_cpu_fashion
train experiment=cnn_fashion_lr_sweep arm=cnn_momentum_schedule hydra.sweep.dir="$dir/sweep_lr_momentum"
read -r -a MOMENTUM <<< "$(choose "$dir/sweep_lr_momentum" val/top1 final "$out/selection_momentum")"
train experiment=cnn_fashion_lr_sweep arm=cnn_adam "optimizer.lr=3e-4,1e-3,3e-3" hydra.sweep.dir="$dir/sweep_lr_adam"
read -r -a ADAM <<< "$(choose "$dir/sweep_lr_adam" val/top1 final "$out/selection_adam")"
train experiment=cnn_fashion_sweep arm=cnn_funnel "${MOMENTUM[@]}" hydra.sweep.dir="$dir/sweep_gammas"
read -r -a GAMMAS <<< "$(choose "$dir/sweep_gammas" val/top1 final "$out/selection_funnel")"
train experiment=cnn_fashion arm=cnn_momentum_schedule seed="$SEEDS" "${MOMENTUM[@]}" hydra.sweep.dir="$dir/finals/momentum_schedule"
train experiment=cnn_fashion arm=cnn_momentum seed="$SEEDS" "${MOMENTUM[@]}" hydra.sweep.dir="$dir/finals/momentum"
train experiment=cnn_fashion arm=cnn_funnel seed="$SEEDS" "${MOMENTUM[@]}" "${GAMMAS[@]}" hydra.sweep.dir="$dir/finals/funnel"
train experiment=cnn_fashion arm=cnn_adam seed="$SEEDS" "${ADAM[@]}" hydra.sweep.dir="$dir/finals/adam"
report table1_cpu "$dir" "$out"
