"""Table 1 of the Funnel paper: MobileNetV1 on CIFAR-10 without a learning-rate schedule.

    python -m experiments.table1_mobilenet multirun/mobilenet_cifar10/finals --out results/mobilenet_cifar10
    python -m experiments.table1_mobilenet --not-run --out results/mobilenet_cifar10
"""
from experiments.tables import Artefact

PAPER = {
    "Momentum (with lr schedule)": (89.51, 0.18, 99.35, 0.05),
    "Momentum (without lr schedule)": (84.14, 0.49, 98.93, 0.35),
    "Funneled Momentum (without lr schedule)": (89.61, 0.28, 98.94, 0.26),
}
TABLE1 = Artefact(
    title="Table 1: MobileNetV1 on CIFAR-10",
    intro="Test accuracy after training, mean ± std over seeds; the paper's values beside ours.",
    paper=PAPER, target=85.0,
    not_run=("It needs CIFAR-10 and GPUs: 150k steps of MobileNetV1 per run.",
             ["bash scripts/reproduce_mobilenet_cifar10.sh   # sweeps, selection, 3 arms x 5 seeds, Table 1, Figure 4"],
             "3 arms x 5 seeds x 150k steps at batch 50, plus the 9-point gamma sweep and the 8-point baseline sweep: "
             "32 runs of about 1 GPU-hour each on an H100 (~250 ms per step on a 2-core CPU, 10 days per run)"))


def main(argv=None) -> None:
    TABLE1.main(argv, __doc__)


if __name__ == "__main__":
    main()
