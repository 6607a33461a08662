#!/usr/bin/env bash
# The CPU-scale analogue of Table 1 ("no schedule needed") and Figure 4, end to end under the tuning protocol
# (configs/tuning/table1_cpu.yaml) on experiment=table1_fashion: the BatchNorm CNN on Fashion-MNIST, 2,200 steps for
# every arm; the scheduled Momentum baseline, Momentum without the schedule at the baseline's lr (the paper's
# protocol) and tuned on its own, Funneled Momentum, AdaGrad-EMA and Schedule-Free AdamW tuned on their own; then
# results/table1_cpu_fashion (the table, the tuning, Figure 4 and what it shows).
# Compute: about 65 runs of 2-3 minutes on one core, in two lanes of one core each: about 1.5 hours on 2 cores.
source "$(dirname "$0")/reproduce_common.sh"
dir=$RUNS/table1_cpu
out=$RESULTS/table1_cpu_fashion
# The methods that tie to the scheduled baseline's pick run in the lane that tunes it.
OMP_NUM_THREADS=1 study configs/tuning/table1_cpu.yaml "$dir" \
  --methods momentum_schedule momentum_paper adagrad_ema sf_adamw & first=$!
OMP_NUM_THREADS=1 study configs/tuning/table1_cpu.yaml "$dir" --methods funnel momentum & second=$!
wait "$first" && wait "$second"
study configs/tuning/table1_cpu.yaml "$dir"  # every run has ended: the whole study's record
# a report from an older protocol leaves no stale file behind (the README and the search record are kept)
rm -f "$out"/table.md "$out"/table.csv "$out"/summary.json "$out"/provenance.json "$out"/*.png "$out"/*.pdf "$out"/*.svg
"$PY" -m experiments.table1_cpu "$dir" --out "$out"
