"""Run directories for the report tests, written by really training tiny runs on the fake data."""
from __future__ import annotations

import pytest

from experiments import protocol
from funnel.train.loop import train
from tests.helpers import QUIET, compose_config

# Rotated-noisy MNIST in three phases of one epoch, two steps each, evaluated every step.
ROTATED = ["dataset.val_size=60", "trainer.batch_size=50", "trainer.eval_batch_size=100", "trainer.epochs=1",
           "trainer.log_every=1", "trainer.eval_every=1", "trainer.checkpoint_every=0", "trainer.num_workers=0"]
# The README demo's sweep (experiment=quick, both arms), likewise three phases of two steps.
QUICK = ["trainer.epochs=1", "trainer.log_every=1", "trainer.eval_every=1", "trainer.checkpoint_every=0", "logger=none",
         *QUIET]
QUICK_ARMS = ("quick_adagrad", "quick_funnel")


@pytest.fixture(scope="module")
def rotated_study(fake_data, tmp_path_factory):
    """A Figure 3 study root as experiments.protocol writes it: AdaGrad and Funnel(AdaGrad) at their arms' values
    (no tuning), one final seed each."""
    root = tmp_path_factory.mktemp("study") / "fig3"
    study = protocol.Study(
        experiment="rotated_mnist", metric="val/current/top1", reduce="mean", budget=1, seeds=[0],
        methods={"adagrad": {"label": "AdaGrad", "base": ["arm=rotated_adagrad"], "space": "fixed"},
                 "funnel": {"label": "Funnel (AdaGrad)", "base": ["arm=rotated_funnel"], "space": "fixed"}})
    protocol.run_study(study, root, protocol.Runner([f"dataset.root={fake_data}", *ROTATED]))
    return root


@pytest.fixture(scope="module")
def quick_sweep(fake_data, tmp_path_factory):
    """The demo's sweep directory: multirun/quick/arm=<arm> for both arms, as `run.py -m experiment=quick` names
    them, each trained in this process on the real composed config."""
    root = tmp_path_factory.mktemp("multirun") / "quick"
    for arm in QUICK_ARMS:
        cfg = compose_config(["experiment=quick", f"arm={arm}", f"dataset.mnist_5k_path={fake_data}/mnist_5k.csv.gz",
                              *QUICK])
        train(cfg, root / f"arm={arm}")
    return root
