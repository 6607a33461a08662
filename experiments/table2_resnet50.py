"""Table 2 of the Funnel paper: ResNet-50 on ImageNet without a learning-rate schedule.

    python -m experiments.table2_resnet50 multirun/resnet50_imagenet/finals --out results/resnet50_imagenet
    python -m experiments.table2_resnet50 --not-run --out results/resnet50_imagenet
"""
from experiments.tables import Artefact

TABLE2 = Artefact(
    title="Table 2: ResNet-50 on ImageNet",
    intro="Top-1 / top-5 on the ILSVRC2012 validation set, mean ± std over seeds; the paper's values beside ours.",
    paper={
        "Momentum (with lr schedule)": (76.57, 0.16, 93.21, 0.04),
        "Momentum (without lr schedule)": (53.80, 0.86, 78.67, 0.74),
        "AdaGrad-EMA (without lr schedule)": (70.70, 0.24, 89.74, 0.17),
        "Funneled Momentum (without lr schedule)": (72.39, 0.09, 90.97, 0.06),
    },
    target=70.0,
    not_run=("It needs ImageNet and a GPU cluster.",
             ["bash scripts/reproduce_resnet50_imagenet.sh /path/to/imagenet  # gamma sweep, 4 arms x 5 seeds"],
             "4 arms x 5 seeds x 100 epochs at batch 4096, plus the 9-point gamma sweep: 29 runs of about 8 hours on "
             "32 GPUs each; ImageNet (ILSVRC2012) on local disk in the ImageFolder layout"))


def main(argv=None) -> None:
    TABLE2.main(argv, __doc__)


if __name__ == "__main__":
    main()
