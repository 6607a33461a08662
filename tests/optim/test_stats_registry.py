"""optimizer_stats and the registry."""
from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch

from funnel.optim import REGISTRY, Funnel, SGDHD, build_optimizer, get_optimizer_spec, optimizer_stats

from .problems import gradient_stream, make_groups, set_grads


def stepped_funnel():
    model = torch.nn.Sequential(torch.nn.Linear(30, 40), torch.nn.ReLU(), torch.nn.Linear(40, 3))
    opt = Funnel([{"params": model[0].parameters()}, {"params": model[2].parameters(), "lr": 0.01}], lr=0.1,
                 momentum=0.9, gamma_p=0.05, gamma_s=0.05)
    x, y = torch.randn(64, 30), torch.randint(3, (64,))
    for _ in range(10):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model, opt


def test_funnel_stats_match_the_state():
    model, opt = stepped_funnel()
    stats = optimizer_stats(opt, model.named_parameters())
    assert stats["lr/group0"] == 0.1 and stats["lr/group1"] == 0.01
    for name, p in model.named_parameters():
        st = opt.state[p]
        gain = st["gain"].numpy().ravel()
        assert stats[f"scale/{name}"] == st["scale"].item()
        assert stats[f"gain/{name}/mean"] == pytest.approx(gain.mean(), rel=1e-6)
        assert stats[f"gain/{name}/min"] == gain.min() and stats[f"gain/{name}/max"] == gain.max()
        for q in (10, 50, 90):
            assert stats[f"gain/{name}/p{q}"] == pytest.approx(np.quantile(gain, q / 100), rel=1e-6)
    assert len(stats) == 2 + 4 * (1 + 6)
    assert all(isinstance(v, float) for v in stats.values())
    assert np.std([stats[f"gain/{n}/p90"] - stats[f"gain/{n}/p10"] for n, _ in model.named_parameters()]) > 0


def test_stats_without_names_and_skipping_stateless_params():
    groups = make_groups()
    opt = Funnel([{"params": groups[0]}, {"params": groups[1]}], lr=0.1)
    for grads in gradient_stream(groups, 2):
        set_grads(groups, grads)
        opt.step()
    stats = optimizer_stats(opt)
    assert "scale/group0.param0" in stats and "gain/group1.param0/p50" in stats
    assert "scale/group1.param1" not in stats  # never had a gradient, so no state


def test_stats_read_with_one_host_copy(monkeypatch):
    model, opt = stepped_funnel()
    calls = []
    original = torch.Tensor.tolist

    def counting(self):
        calls.append(self.numel())
        return original(self)

    monkeypatch.setattr(torch.Tensor, "tolist", counting)
    monkeypatch.setattr(torch.Tensor, "item", lambda self: pytest.fail("per-tensor .item()"))
    stats = optimizer_stats(opt, model.named_parameters())
    assert len(calls) == 1 and calls[0] == len(stats) - 2  # the two group lrs are Python floats


def test_large_tensor_quantiles_on_a_subsample():
    w = torch.zeros(10_000, requires_grad=True)
    opt = Funnel([w], lr=0.1)
    w.grad = torch.ones_like(w)
    opt.step()
    opt.state[w]["gain"].copy_(torch.linspace(0, 2, 10_000))
    stats = optimizer_stats(opt, [("w", w)], max_samples=1000)
    assert stats["gain/w/p50"] == pytest.approx(1.0, abs=2e-3)
    assert stats["gain/w/max"] == 2.0  # min/max/mean always use the whole tensor


def test_hd_rate_is_reported():
    w = torch.zeros(3, requires_grad=True)
    opt = SGDHD([w], lr=0.01, hypergrad_lr=0.1)
    for _ in range(3):
        w.grad = torch.ones(3)
        opt.step()
    stats = optimizer_stats(opt, [("w", w)])
    assert stats == {"lr/group0": pytest.approx(float(opt.param_groups[0]["lr"]))}
    assert stats["lr/group0"] > 0.01


REQUIRED = ["momentum", "adagrad", "adagrad_ema", "adam", "funnel_momentum", "funnel_adagrad", "funnel_adam",
            "sgd_hd", "sgdn_hd", "adam_hd", "sadam", "samsgrad"]


def test_registry_has_every_configured_optimizer():
    assert set(REQUIRED) <= set(REGISTRY)


@pytest.mark.parametrize("name", list(REGISTRY))
def test_registry_entries_build(name):
    spec = get_optimizer_spec(name)
    assert spec.name == name and spec.description
    opt = spec.build([torch.zeros(2, requires_grad=True)])
    made_by = spec.resolve()
    # a class, or a constructor function (the wrapped peers: Mechanic, ScheduleFreeWrapper)
    assert isinstance(opt, made_by) if inspect.isclass(made_by) else callable(opt.step) and opt.param_groups
    for key, value in spec.defaults.items():
        if key != "inner":
            assert opt.defaults[key] == value


def test_build_optimizer_applies_overrides():
    opt = build_optimizer([torch.zeros(2, requires_grad=True)], "funnel_momentum", lr=0.3, gamma_s=0.0)
    assert opt.defaults["lr"] == 0.3 and opt.defaults["gamma_s"] == 0.0 and opt.defaults["momentum"] == 0.9


def test_unknown_optimizer_lists_valid_names():
    with pytest.raises(ValueError, match="valid names: .*funnel_momentum"):
        build_optimizer([torch.zeros(2, requires_grad=True)], "funel_momentum")
