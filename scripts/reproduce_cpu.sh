#!/usr/bin/env bash
# Everything of the paper that a 2-core CPU can run, in two lanes of one core each, cheap work first: Figure 3 on
# real digits in four variants under the tuning protocol (about 1.5 hours measured), then the CPU analogue of
# Table 1 and Figure 4 (its own two lanes, then its report); for Table 1 / Figure 4 / Table 2 at full scale, a note
# in results/ of what they need and the commands that make them; and the claims ledger.
source "$(dirname "$0")/reproduce_common.sh"
lane() { OMP_NUM_THREADS=1 bash scripts/reproduce_rotated_mnist.sh "$@"; }
lane mnist5k_b10k fashion_b10k & first=$!
lane mnist5k_b100 fashion_b100 & second=$!
wait "$first" && wait "$second"
bash scripts/reproduce_table1_cpu.sh  # two lanes of its own (about 1.5 hours)
"$PY" -m experiments.table1_mobilenet --not-run --out "$RESULTS/mobilenet_cifar10"
"$PY" -m experiments.table2_resnet50 --not-run --out "$RESULTS/resnet50_imagenet"
"$PY" -m experiments.claims --results "$RESULTS" --out "$RESULTS/claims.md"
