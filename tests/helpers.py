"""Composing the real configs and running the real runner, in-process or as a subprocess."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml
from hydra import compose, initialize_config_dir

from funnel.train import resolvers

resolvers.register()

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "configs"
EXPERIMENTS = sorted(p.stem for p in (CONFIG_DIR / "experiment").glob("*.yaml"))
QUIET = ["trainer.progress_bar=false", "trainer.num_workers=0"]


def arms(experiment: str) -> list[str]:
    spec = yaml.safe_load((CONFIG_DIR / "experiment" / f"{experiment}.yaml").read_text())
    return spec["hydra"]["sweeper"]["params"]["arm"].split(",")


def tiny(experiment: str, data_root: Path) -> list[str]:
    """Overrides that point an experiment at the fake data and shrink it to a few steps."""
    per_experiment = {
        "quick": [f"dataset.mnist_5k_path={data_root}/mnist_5k.csv.gz"],
        "rotated_mnist": [f"dataset.root={data_root}", "dataset.val_size=60", "trainer.batch_size=50",
                          "trainer.eval_batch_size=100"],
        "mobilenet_cifar10": [f"dataset.root={data_root}", "dataset.val_size=20", "trainer.batch_size=8",
                              "trainer.epochs=1", "trainer.eval_batch_size=40"],
        "resnet50_imagenet": [f"dataset.root={data_root}/imagenet", "dataset.image_size=64",
                              "dataset.eval_resize=72", "trainer.batch_size=6", "trainer.eval_batch_size=9"],
        "cnn_fashion": [f"dataset.root={data_root}", "dataset.val_size=60", "trainer.batch_size=32",
                        "trainer.eval_batch_size=100"],
    }
    per_experiment["peers_rotated_fashion"] = per_experiment["rotated_mnist"]
    per_experiment["peers_rotated_mnist5k"] = [f"dataset.mnist_5k_path={data_root}/mnist_5k.csv.gz",
                                               "trainer.batch_size=100", "trainer.eval_batch_size=100"]
    per_experiment["peers_cnn_fashion"] = per_experiment["table1_fashion"] = per_experiment["cnn_fashion"]
    return per_experiment[experiment] + ["trainer.max_steps=2", "trainer.log_every=1", "trainer.eval_every=2",
                                         "trainer.checkpoint_every=0", *QUIET]


def compose_config(overrides: list[str], hydra: bool = False):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose("config", overrides=overrides, return_hydra_config=hydra)


def run_cli(args: list[str], env: dict | None = None, torchrun: int = 0, timeout: int = 300,
            fault: tuple[str, int] | None = None):
    """`python run.py <args>` (or under torchrun with that many processes) from the repository root; with
    `fault=(kind, step)`, a fault right after that step (tests/faulty_run.py: "kill" or "stall")."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={torchrun}"] \
        if torchrun else [sys.executable]
    script = ["-m", "tests.faulty_run", fault[0], str(fault[1])] if fault else ["run.py"]
    return subprocess.run([*launcher, *script, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "WANDB_SILENT": "true", "HF_HUB_OFFLINE": "1", **(env or {})})


class Crash(Exception):
    """Raised by `crash_after` to stop a run in the middle, as a crash would (its last checkpoint stays on disk)."""


def crash_after(step: int):
    """An `after_step` hook for `train` that stops the run right after `step` (and its checkpoint, if one is due)."""
    def hook(run):
        if run.step == step:
            raise Crash(f"stopped after step {step}")
    return hook
