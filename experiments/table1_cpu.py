"""A CPU-scale analogue of Table 1 (the "no schedule needed" claim): the small CNN on Fashion-MNIST with the paper's
arms (plus Adam), the same step budget for every arm, under the tuning protocol (configs/tuning/table1_cpu.yaml).
Its accuracies are not comparable to the paper's CIFAR-10 ones; the gaps to the scheduled baseline are, so both are
shown. Also draws Figure 4's scales and gains from the tuned Funnel's finals.

    python -m experiments.protocol configs/tuning/table1_cpu.yaml --root multirun/table1_cpu
    python -m experiments.table1_cpu multirun/table1_cpu --out results/table1_cpu_fashion
"""
from experiments.table1_mobilenet import PAPER
from experiments.tables import Artefact

TABLE1_CPU = Artefact(
    name="table1_cpu",
    title="Table 1, CPU analogue: small CNN on Fashion-MNIST",
    intro="The paper's columns are its MobileNetV1/CIFAR-10 values: compare the gaps to the scheduled baseline, not "
          "the accuracies.",
    paper=PAPER, same_task=False, scales_figure="scales_gains.png")


def main(argv=None) -> None:
    TABLE1_CPU.main(argv, __doc__)


if __name__ == "__main__":
    main()
