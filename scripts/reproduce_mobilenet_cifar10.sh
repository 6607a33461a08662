#!/usr/bin/env bash
# Table 1 and Figure 4 of the Funnel paper (MobileNetV1 on CIFAR-10, batch 50, 150k steps), end to end:
# (1) the scheduled Momentum baseline's lr x weight decay, 8 runs, seed 0; (2) Funneled Momentum at that lr over
# the paper's gamma grid, 9 runs; both chosen on final validation accuracy; (3) 3 arms x seeds 0-4;
# (4) results/mobilenet_cifar10: Table 1 and Figure 4.
# Compute: 32 runs of 150k steps; about 1 GPU-hour each on an H100 (~250 ms per step on a 2-core CPU: not here).
# Data: CIFAR-10 in data/cifar-10-batches-py (or EXTRA=dataset.download=true). Several GPUs per run:
#   LAUNCH="torchrun --standalone --nproc_per_node=4" bash scripts/reproduce_mobilenet_cifar10.sh
source "$(dirname "$0")/reproduce_common.sh"
dir=$RUNS/mobilenet_cifar10
out=$RESULTS/mobilenet_cifar10
train experiment=mobilenet_cifar10_lr_sweep arm=cifar_momentum_schedule hydra.sweep.dir="$dir/sweep_lr"
read -r -a BASE <<< "$(choose "$dir/sweep_lr" val/top1 final "$out/selection_momentum")"
train experiment=mobilenet_cifar10_sweep arm=cifar_funnel "${BASE[@]}" hydra.sweep.dir="$dir/sweep_gammas"
read -r -a GAMMAS <<< "$(choose "$dir/sweep_gammas" val/top1 final "$out/selection_funnel")"
train experiment=mobilenet_cifar10 arm=cifar_momentum_schedule seed="$SEEDS" "${BASE[@]}" hydra.sweep.dir="$dir/finals/momentum_schedule"
train experiment=mobilenet_cifar10 arm=cifar_momentum seed="$SEEDS" "${BASE[@]}" hydra.sweep.dir="$dir/finals/momentum"
train experiment=mobilenet_cifar10 arm=cifar_funnel seed="$SEEDS" "${BASE[@]}" "${GAMMAS[@]}" hydra.sweep.dir="$dir/finals/funnel"
report table1_mobilenet "$dir" "$out"
"$PY" -m experiments.fig4_scales_gains "$dir/finals" --out "$out/figure4.png"
