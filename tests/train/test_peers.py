"""The peers (Schedule-Free, Prodigy, D-Adaptation, DoG) in the runner: resume, evaluation at Schedule-Free's
averaged point, BatchNorm statistics recomputed there, and the message when their package is missing."""
from __future__ import annotations

import json
import sys

import pytest
import torch

from funnel.data.base import TensorSet
from funnel.optim import REGISTRY, build_optimizer
from funnel.optim.registry import PEER
from funnel.train import checkpoint, distributed
from funnel.train.evaluation import evaluate, recompute_batchnorm
from funnel.train.loop import train
from tests.helpers import Crash, crash_after, QUIET, compose_config

PEERS = [name for name, spec in REGISTRY.items() if spec.description.startswith(PEER)]
RESUMABLE = [name for name in PEERS if not REGISTRY[name].cannot_resume]
UNRESUMABLE = [name for name in PEERS if REGISTRY[name].cannot_resume]


def quick(fake_data, *overrides):
    return compose_config(["experiment=quick", "logger=none", f"dataset.mnist_5k_path={fake_data}/mnist_5k.csv.gz",
                           "trainer.epochs=2", "trainer.eval_every=3", "trainer.checkpoint_every=3",
                           "trainer.log_every=3", *QUIET, *overrides])


@pytest.mark.parametrize("name", RESUMABLE)
def test_interrupted_peer_resumes_bit_identical(name, fake_data, tmp_path):
    train(quick(fake_data, f"optimizer={name}", "trainer.max_steps=12"), tmp_path / "straight")
    with pytest.raises(Crash):  # stopped right after the checkpoint at step 6
        train(quick(fake_data, f"optimizer={name}", "trainer.max_steps=12"), tmp_path / "resumed",
              after_step=crash_after(6))
    train(quick(fake_data, f"optimizer={name}", "trainer.max_steps=12"), tmp_path / "resumed")
    a, b = (checkpoint.load(tmp_path / d / checkpoint.LAST) for d in ("straight", "resumed"))
    assert a["step"] == b["step"] == 12
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert json.loads((tmp_path / "straight" / "summary.json").read_text())["final"] == \
        json.loads((tmp_path / "resumed" / "summary.json").read_text())["final"]


@pytest.mark.parametrize("name", UNRESUMABLE)
def test_a_peer_whose_state_does_not_survive_a_checkpoint_is_trained_but_never_resumed(name, fake_data, tmp_path):
    with pytest.raises(Crash):  # trained, then stopped right after the checkpoint at step 6
        train(quick(fake_data, f"optimizer={name}", "trainer.max_steps=12"), tmp_path, after_step=crash_after(6))
    assert (tmp_path / checkpoint.LAST).exists()
    with pytest.raises(ValueError, match=f"optimizer '{name}', which cannot be resumed: .* Delete"):
        train(quick(fake_data, f"optimizer={name}", "trainer.max_steps=12"), tmp_path)


@pytest.mark.parametrize("name", UNRESUMABLE)
def test_the_reason_a_peer_cannot_resume_still_holds(name):
    """Straight 8 steps against 4 steps, state_dict into a new optimizer, 4 more: if this ever matches, the package
    has fixed its state and the registry's cannot_resume should go."""
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 5, generator=gen), torch.randn(64, generator=gen)

    def run(split=None):
        w = torch.zeros(5, requires_grad=True)
        opt = build_optimizer([w], name)
        for k in range(8):
            if k == split:
                saved, w = opt.state_dict(), w.detach().clone().requires_grad_()
                opt = build_optimizer([w], name)
                opt.load_state_dict(saved)
            loss = ((x @ w - y) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step(loss=loss) if "momo" in name else opt.step()
        return w.detach()

    straight = run()
    try:
        resumed = run(split=4)
    except KeyError:
        return  # Mechanic: its state is keyed by the old parameter tensors
    finally:
        torch.set_grad_enabled(True)  # mechanic-pytorch leaves grad mode off when its step raises
    assert not torch.equal(straight, resumed)


def test_schedule_free_is_evaluated_and_saved_at_its_averaged_point(fake_data, tmp_path):
    cfg = quick(fake_data, "optimizer=sf_adamw", "trainer.max_steps=12")
    train(cfg, tmp_path)
    saved = checkpoint.load(tmp_path / checkpoint.LAST)
    assert saved["optimizer"]["param_groups"][0]["train_mode"] is False  # saved after optimizer.eval()
    from hydra.utils import instantiate

    from funnel.train.build import build_model
    data = instantiate(cfg.dataset)
    model = build_model(cfg.model, data)
    model.load_state_dict(saved["model"])
    ddp = distributed.Distributed(0, 1, 0, torch.device("cpu"))
    final = json.loads((tmp_path / "summary.json").read_text())["final"]
    for key in ("test/angle0", "val/angle90"):
        got = evaluate(model, data.eval_sets[key], None, 1000, ddp, 0, torch.autocast("cpu", enabled=False))
        assert got["top1"] == pytest.approx(final[f"{key}/top1"])


def test_batchnorm_statistics_are_recomputed_exactly():
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 1), torch.nn.BatchNorm2d(3))
    x = torch.randn(40, 1, 4, 4) * 3 + 1
    data = TensorSet(x, torch.zeros(40, dtype=torch.long))
    model[1].running_mean.fill_(7.0)
    batches = list(torch.arange(40).split(10))
    recompute_batchnorm(model, data, None, batches, distributed.Distributed(0, 1, 0, torch.device("cpu")), 0,
                        torch.autocast("cpu", enabled=False))
    with torch.no_grad():
        conv = model[0](x)
    torch.testing.assert_close(model[1].running_mean, conv.mean(dim=(0, 2, 3)))
    assert model[1].momentum == 0.1 and model.training


def test_a_missing_peer_package_names_the_extra(monkeypatch, fake_data, tmp_path):
    monkeypatch.setitem(sys.modules, "prodigyopt", None)  # as if it were not installed
    with pytest.raises(ImportError, match=r"pip install -e '\.\[peers\]'"):
        build_optimizer([torch.zeros(2, requires_grad=True)], "prodigy")
    with pytest.raises(ImportError, match="needs the package 'prodigyopt'"):
        train(quick(fake_data, "optimizer=prodigy"), tmp_path)
