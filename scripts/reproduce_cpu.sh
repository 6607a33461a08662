#!/usr/bin/env bash
# Everything of the paper that a 2-core CPU can run (about 2 hours): Figure 3 on real digits in four variants, the
# CPU analogue of Table 1; and, for Table 1 / Figure 4 / Table 2 at full scale, a note in results/ of what they
# need and the commands that make them.
source "$(dirname "$0")/reproduce_common.sh"
bash scripts/reproduce_rotated_mnist.sh
bash scripts/reproduce_table1_cpu.sh
"$PY" -m experiments.table1_mobilenet --not-run --out "$RESULTS/mobilenet_cifar10"
"$PY" -m experiments.table2_resnet50 --not-run --out "$RESULTS/resnet50_imagenet"
