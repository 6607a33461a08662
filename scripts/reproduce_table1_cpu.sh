#!/usr/bin/env bash
# The CPU-scale analogue of Table 1 ("no schedule needed"), end to end under the tuning protocol
# (configs/tuning/table1_cpu.yaml): the small CNN on Fashion-MNIST, 3 epochs (1,290 steps at batch 128) for every
# arm; the scheduled Momentum baseline, Momentum without the schedule by the paper's protocol (at the baseline's lr)
# and tuned on its own, Funneled Momentum by the paper's protocol (its gamma grid at the baseline's lr) and tuned on
# its own, and Adam; then results/table1_cpu_fashion (the table, the tuning, Figure 4's scales and gains).
# Compute: about 90 runs of 1-2 minutes on one core.
source "$(dirname "$0")/reproduce_common.sh"
dir=$RUNS/table1_cpu
out=$RESULTS/table1_cpu_fashion
study configs/tuning/table1_cpu.yaml "$dir"
rm -rf "$out"  # a report from an older protocol leaves no stale file behind
"$PY" -m experiments.table1_cpu "$dir" --out "$out"
