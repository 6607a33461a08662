"""A CPU-scale analogue of Table 1 (the "no schedule needed" claim): the small CNN on Fashion-MNIST with the same
arms (plus Adam) and the same step budget for every arm. Its accuracies are not comparable to the paper's CIFAR-10
ones; the gaps to the scheduled baseline are, so both are shown. Also draws Figure 4's scales and gains.

    python -m experiments.table1_cpu multirun/cnn_fashion/finals --out results/table1_cpu_fashion [--sweep DIR]
"""
from experiments.table1_mobilenet import PAPER
from experiments.tables import Artefact

TABLE1_CPU = Artefact(
    title="Table 1, CPU analogue: small CNN on Fashion-MNIST",
    intro="Test accuracy after the same number of steps for every arm, mean ± std over seeds. The paper's columns "
          "are its MobileNetV1/CIFAR-10 values: compare the gaps to the scheduled baseline, not the accuracies.",
    paper=PAPER, target=88.0, order=list(PAPER) + ["Adam (without lr schedule)"],
    gap_to="Momentum (with lr schedule)", scales_figure="scales_gains.png")


def main(argv=None) -> None:
    TABLE1_CPU.main(argv, __doc__)


if __name__ == "__main__":
    main()
