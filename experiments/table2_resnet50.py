"""Table 2 of the Funnel paper: ResNet-50 on ImageNet without a learning-rate schedule, under the tuning protocol
the paper's way (configs/tuning/table2_resnet50.yaml: baselines at the paper's settings, Funnel over its grid).

    python -m experiments.table2_resnet50 multirun/resnet50_imagenet --out results/resnet50_imagenet
    python -m experiments.table2_resnet50 --not-run --out results/resnet50_imagenet
"""
from experiments.checks import Expect
from experiments.tables import Artefact

TABLE2 = Artefact(
    name="table2_resnet50",
    expect=Expect("table2_resnet50", experiment=("resnet50_imagenet",), dataset=("imagenet",), model=("resnet50",),
                  source="a study root of configs/tuning/table2_resnet50.yaml"),
    title="Table 2: ResNet-50 on ImageNet",
    intro="Top-1 / top-5 on the ILSVRC2012 validation set; the paper's values beside ours.",
    paper={
        "momentum_schedule": (76.57, 0.16, 93.21, 0.04),
        "momentum_paper": (53.80, 0.86, 78.67, 0.74),
        "adagrad_ema": (70.70, 0.24, 89.74, 0.17),
        "funnel_paper": (72.39, 0.09, 90.97, 0.06),
    },
    funnel="funnel_paper", target_metric="test/top1",  # the finals hold out no validation images
    not_run=("It needs ImageNet and a GPU cluster.",
             ["bash scripts/reproduce_resnet50_imagenet.sh /path/to/imagenet  # the study: gamma grid, 4 arms x 5 "
              "seeds, Table 2"],
             "the 9-point gamma grid, then 4 arms x 5 seeds x 100 epochs at batch 4096: 29 runs of about 8 hours on "
             "32 GPUs each; ImageNet (ILSVRC2012) on local disk in the ImageFolder layout"))


def main(argv=None) -> None:
    TABLE2.main(argv, __doc__)


if __name__ == "__main__":
    main()
