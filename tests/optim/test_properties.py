"""Properties every registered optimizer must have, and constructor validation."""
from __future__ import annotations

import math

import pytest
import torch

from funnel.optim import REGISTRY, AdagradEMA, AdamHD, Funnel, SAMSGrad, Sadam, SGDHD, build_optimizer, \
    Preconditioner
from funnel.optim.registry import PEER, takes_loss

from .problems import least_squares, logistic_regression

FUNNELS = [name for name, spec in REGISTRY.items() if spec.cls is Funnel]


def train(opt, loss_fn, steps):
    """`steps` full-batch steps. Schedule-Free optimizers step in train mode and are measured in eval mode (the
    averaged point), as their documentation prescribes."""
    if callable(getattr(opt, "train", None)):
        opt.train()
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        opt.step(loss=loss.detach()) if takes_loss(opt) else opt.step()  # MoMo's step is set by the loss
    if callable(getattr(opt, "eval", None)):
        opt.eval()


@pytest.mark.parametrize("problem", [least_squares, logistic_regression])
@pytest.mark.parametrize("name", list(REGISTRY))
def test_loss_decreases_with_registry_defaults(name, problem):
    """With the registry's defaults (not tuned to these problems) 200 full-batch steps lower the loss by more
    than rounding noise; a sign error or a blow-up fails. Some defaults are slow here by design (AdaGrad-EMA's
    lr 1e-3 is the paper's ImageNet value), so the bar is a real decrease, not a fast one."""
    params, loss_fn = problem()
    opt = build_optimizer(params, name)
    initial = loss_fn().item()
    train(opt, loss_fn, 200)
    final = loss_fn().item()
    assert math.isfinite(final) and final < 0.99 * initial, f"{name}: {initial:.4f} -> {final:.4f}"


@pytest.mark.parametrize("egu", ["exact", "log"])
@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("name", FUNNELS)
def test_gains_and_scales_stay_finite_and_in_range_with_huge_gammas(name, normalize, egu):
    params, loss_fn = logistic_regression()
    gain_range, scale_range = (1e-3, 50.0), (1e-2, 20.0)
    opt = build_optimizer(params, name, gamma_p=1e6, gamma_s=1e6, normalize_gains=normalize,
                          normalize_scale=normalize, egu=egu, gain_range=gain_range, scale_range=scale_range)
    for _ in range(30):
        train(opt, loss_fn, 1)
        for st in opt.state.values():
            low, high = torch.tensor(gain_range, dtype=st["gain"].dtype)  # the bounds as the state stores them
            assert torch.isfinite(st["gain"]).all() and torch.isfinite(st["scale"])
            assert st["gain"].min() >= low and st["gain"].max() <= high
            low, high = torch.tensor(scale_range, dtype=st["scale"].dtype)
            assert low <= st["scale"] <= high
    # they were pushed against the bounds, not left alone
    gains = torch.cat([st["gain"].flatten() for st in opt.state.values()])
    bounds = torch.tensor(gain_range, dtype=gains.dtype)
    assert gains.min() == bounds[0] or gains.max() == bounds[1]


def test_custom_preconditioner_object():
    """A user's Preconditioner (signSGD's direction) plugs in; with gammas 0 Funnel is signSGD, in both paths."""

    class Sign(Preconditioner):
        def init_state(self, param, dtype):
            return {"calls": torch.zeros((), dtype=dtype)}

        def direction(self, param, grad, state, step):
            state["calls"] += 1
            return grad.sign()

    for foreach in (False, True):
        w = torch.tensor([1.0, -2.0, 3.0], requires_grad=True)
        opt = Funnel([w], lr=0.5, inner=Sign(), gamma_p=0, gamma_s=0, foreach=foreach)
        for g in ([0.3, -4.0, 0.0], [-1.0, -1.0, 2.0]):
            w.grad = torch.tensor(g)
            opt.step()
        assert torch.equal(w.detach(), torch.tensor([1.0, -1.0, 2.5]))
        assert opt.state[w]["inner"]["calls"].item() == 2


def p():
    return [torch.zeros(2, requires_grad=True)]


INVALID = [
    (lambda: Funnel(p(), lr=-0.1), "lr"),
    (lambda: Funnel(p(), lr=0.1, gamma_p=-1e-4), "gamma_p"),
    (lambda: Funnel(p(), lr=0.1, gamma_s=-1e-3), "gamma_s"),
    (lambda: Funnel(p(), lr=0.1, beta=1.0), "beta"),
    (lambda: Funnel(p(), lr=0.1, beta=-0.1), "beta"),
    (lambda: Funnel(p(), lr=0.1, momentum=1.5), "momentum"),
    (lambda: Funnel(p(), lr=0.1, weight_decay=-1.0), "weight_decay"),
    (lambda: Funnel(p(), lr=0.1, nesterov=True), "nesterov"),
    (lambda: Funnel(p(), lr=0.1, gain_range=(2.0, 1.0)), "gain_range"),
    (lambda: Funnel(p(), lr=0.1, gain_range=(1.0, 1.0)), "gain_range"),
    (lambda: Funnel(p(), lr=0.1, gain_range=(-1.0, 1.0)), "gain_range"),
    (lambda: Funnel(p(), lr=0.1, scale_range=(5.0,)), "scale_range"),
    (lambda: Funnel(p(), lr=0.1, scale_range=(3.0, 0.1)), "scale_range"),
    (lambda: Funnel(p(), lr=0.1, scale_granularity="layer"), "scale_granularity"),
    (lambda: Funnel(p(), lr=0.1, egu="schraudolph"), "egu"),
    (lambda: Funnel(p(), lr=0.1, inner="lion"), "inner"),
    (lambda: Funnel(p(), lr=0.1, inner="adam", inner_kwargs={"beta1": 0.9}), "inner_kwargs"),
    (lambda: Funnel(p(), lr=0.1, inner="adam", inner_kwargs={"betas": (1.0, 0.9)}), "betas"),
    (lambda: Funnel(p(), lr=0.1, inner="adagrad", inner_kwargs={"eps": -1.0}), "eps"),
    (lambda: Funnel(p(), lr=0.1, inner=torch.optim.Adam, inner_kwargs={"lr": 1.0}), "lr"),
    (lambda: Funnel([{"params": p(), "gamma_p": -1.0}], lr=0.1), "gamma_p"),
    (lambda: Funnel([torch.zeros(2, dtype=torch.complex64, requires_grad=True)], lr=0.1), "complex"),
    (lambda: SGDHD(p(), lr=-1e-3), "lr"),
    (lambda: SGDHD(p(), hypergrad_lr=-1e-3), "hypergrad_lr"),
    (lambda: SGDHD(p(), nesterov=True), "nesterov"),
    (lambda: SGDHD(p(), momentum=1.0), "momentum"),
    (lambda: SGDHD(p(), min_lr=float("nan")), "min_lr"),
    (lambda: AdamHD(p(), betas=(0.9, 1.0)), "betas"),
    (lambda: AdamHD(p(), eps=-1e-8), "eps"),
    (lambda: Sadam(p(), softplus_beta=0.0), "softplus_beta"),
    (lambda: Sadam(p(), lr=-1.0), "lr"),
    (lambda: SAMSGrad(p(), betas=(-0.1, 0.999)), "betas"),
    (lambda: AdagradEMA(p(), beta=1.0), "beta"),
    (lambda: AdagradEMA(p(), initial_accumulator_value=-1.0), "initial_accumulator_value"),
]


@pytest.mark.parametrize("make,name", INVALID, ids=[f"{i}-{n}" for i, (_, n) in enumerate(INVALID)])
def test_invalid_arguments_raise_naming_the_argument(make, name):
    with pytest.raises(ValueError, match=name):
        make()


def test_unknown_inner_lists_the_valid_ones():
    with pytest.raises(ValueError) as err:
        Funnel(p(), lr=0.1, inner="lion")
    for valid in ("sgd", "adagrad", "adagrad_ema", "adam", "rmsprop", "sadam"):
        assert repr(valid) in str(err.value)


OURS = [name for name, spec in REGISTRY.items()
        if spec.resolve().__module__.startswith("funnel.") and not spec.description.startswith(PEER)]


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("name", OURS)
def test_step_never_reads_tensor_values_on_the_host(name, foreach, monkeypatch):
    """No .item(), float(), bool() or .tolist() of a tensor inside step(): on a GPU each would be a host sync."""
    params, loss_fn = logistic_regression()
    opt = build_optimizer(params, name, foreach=foreach)
    train(opt, loss_fn, 2)  # lazy state init happens outside the patched region too

    def forbidden(*args, **kwargs):
        raise AssertionError("host read of a tensor value inside step()")

    for method in ("item", "tolist", "__bool__", "__float__", "__int__", "numpy"):
        monkeypatch.setattr(torch.Tensor, method, forbidden)
    for _ in range(3):
        opt.zero_grad()
        loss_fn().backward()
        opt.step()
