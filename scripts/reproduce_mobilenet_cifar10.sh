#!/usr/bin/env bash
# Table 1 and Figure 4 of the Funnel paper (MobileNetV1 on CIFAR-10, batch 50, 150k steps), end to end under the
# tuning protocol (configs/tuning/table1_mobilenet.yaml): the scheduled Momentum baseline tuned over lr and weight
# decay; Momentum without the schedule and Funneled Momentum by the paper's protocol (at the baseline's lr and weight
# decay; Funnel over the paper's gamma grid) and tuned on their own; 5 seeds each; then results/mobilenet_cifar10.
# Compute: about 70 runs of 150k steps; about 1 GPU-hour each on an H100 (~250 ms per step on a 2-core CPU: not
# here). Data: CIFAR-10 in data/cifar-10-batches-py (or EXTRA=dataset.download=true). Several GPUs per run:
#   LAUNCH="torchrun --standalone --nproc_per_node=4" bash scripts/reproduce_mobilenet_cifar10.sh
source "$(dirname "$0")/reproduce_common.sh"
dir=$RUNS/mobilenet_cifar10
out=$RESULTS/mobilenet_cifar10
study configs/tuning/table1_mobilenet.yaml "$dir"
"$PY" -m experiments.table1_mobilenet "$dir" --out "$out"
