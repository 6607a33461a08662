"""Table 1 of the Funnel paper: MobileNetV1 on CIFAR-10 without a learning-rate schedule, under the tuning protocol
(configs/tuning/table1_mobilenet.yaml); also Figure 4 from the tuned Funnel's finals.

    python -m experiments.table1_mobilenet multirun/mobilenet_cifar10 --out results/mobilenet_cifar10
    python -m experiments.table1_mobilenet --not-run --out results/mobilenet_cifar10
"""
from experiments.checks import Expect
from experiments.tables import Artefact

# The paper's rows are its own protocol's: momentum and Funnel without the schedule at the scheduled lr.
PAPER = {
    "momentum_schedule": (89.51, 0.18, 99.35, 0.05),
    "momentum_paper": (84.14, 0.49, 98.93, 0.35),
    "funnel_paper": (89.61, 0.28, 98.94, 0.26),
}
TABLE1 = Artefact(
    name="table1_mobilenet",
    expect=Expect("table1_mobilenet", experiment=("mobilenet_cifar10",), dataset=("cifar10",), model=("mobilenet_v1",),
                  source="a study root of configs/tuning/table1_mobilenet.yaml"),
    title="Table 1: MobileNetV1 on CIFAR-10",
    intro="The paper's values beside ours, on the rows of the paper's own protocol.",
    paper=PAPER, scales_figure="figure4.png",
    not_run=("It needs CIFAR-10 and GPUs: 150k steps of MobileNetV1 per run.",
             ["bash scripts/reproduce_mobilenet_cifar10.sh   # the study (tuning, finals), Table 1, Figure 4"],
             "5 arms: 8 Halton trials each for the 3 tuned ones (plus extensions where a pick lands on an edge), the "
             "paper's 18-point gamma grid, then 5 seeds each: about 70 runs of 150k steps at batch 50, about 1 "
             "GPU-hour each on an H100 (~250 ms per step on a 2-core CPU, 10 days per run)"))


def main(argv=None) -> None:
    TABLE1.main(argv, __doc__)


if __name__ == "__main__":
    main()
