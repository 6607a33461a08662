"""Every config composes, every experiment (and each of its arms) runs, the optimizer configs match the registry."""
from __future__ import annotations

import inspect

import json

import pytest
import torch
from hydra.errors import MissingConfigException
from hydra.utils import instantiate
from omegaconf import OmegaConf

from funnel.optim import REGISTRY, Preconditioner
from funnel.train.loop import train
from tests.helpers import CONFIG_DIR, EXPERIMENTS, arms, compose_config, tiny

CASES = [(e, a) for e in EXPERIMENTS for a in arms(e)]


@pytest.mark.parametrize("experiment,arm", CASES, ids=[f"{e}-{a}" for e, a in CASES])
def test_every_experiment_arm_runs_on_tiny_real_format_data(experiment, arm, fake_data, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = compose_config([f"experiment={experiment}", f"arm={arm}", "logger=wandb", *tiny(experiment, fake_data)])
    assert cfg.logger.mode == "offline"
    train(cfg, tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["steps"] == 2
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [0, 1, 2] and "train/loss" in records[-1]
    assert any(k.endswith("/top1") for k in summary["final"])
    assert list(tmp_path.glob("wandb/offline-run-*/run-*.wandb")), "W&B wrote no offline run"
    if "funnel" in arm:
        assert any(k.startswith("scale/") for k in records[-1]) and (tmp_path / "gains.npz").exists()


def test_experiments_have_arms_and_run_commands():
    for experiment in EXPERIMENTS:
        text = (CONFIG_DIR / "experiment" / f"{experiment}.yaml").read_text()
        assert "run.py" in text.split("defaults:")[0], f"{experiment}: no run command in its header"
        for arm in arms(experiment):
            assert (CONFIG_DIR / "arm" / f"{arm}.yaml").exists(), f"{experiment}: arm {arm} has no config"


@pytest.mark.parametrize("group", ["dataset", "model", "optimizer", "schedule", "trainer", "logger", "arm"])
def test_every_option_composes_and_resolves(group):
    for path in sorted((CONFIG_DIR / group).glob("*.yaml")):
        cfg = compose_config([f"{group}={path.stem}"])
        OmegaConf.to_container(cfg, resolve=True)


@pytest.mark.parametrize("name", list(REGISTRY))
def test_optimizer_config_matches_the_registry(name):
    from funnel.train.optimizer_configs import config_text

    path = CONFIG_DIR / "optimizer" / f"{name}.yaml"
    assert path.read_text() == config_text(name), "stale: run python -m funnel.train.optimizer_configs"
    spec = REGISTRY[name]
    cfg = compose_config([f"optimizer={name}"])
    opt = instantiate(cfg.optimizer)([torch.zeros(3, requires_grad=True)])
    made_by = spec.resolve()
    assert type(opt) is made_by if inspect.isclass(made_by) else callable(opt.step) and opt.param_groups
    for key, value in spec.defaults.items():
        if key == "inner":
            inner = opt.preconditioner(opt.param_groups[0])
            assert isinstance(inner, Preconditioner) and inner.name == value
        else:
            assert opt.defaults[key] == value


def test_no_optimizer_config_without_a_registry_entry():
    assert {p.stem for p in (CONFIG_DIR / "optimizer").glob("*.yaml")} == set(REGISTRY)


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(MissingConfigException) as err:
        compose_config(["optimizer=funnel_momentun"])
    assert "funnel_momentum" in str(err.value)
    with pytest.raises(MissingConfigException) as err:
        compose_config(["experiment=mobilenet"])
    assert "mobilenet_cifar10" in str(err.value)


def test_slurm_launcher_config():
    cfg = compose_config(["hydra/launcher=slurm", "hydra.launcher.nodes=2"], hydra=True)
    launcher = cfg.hydra.launcher
    assert "SlurmLauncher" in launcher._target_
    assert launcher.nodes == 2 and launcher.tasks_per_node == launcher.gpus_per_node == 8
