"""Cases that reduce to torch.optim: the same trajectory up to float64 rounding, over 100 steps."""
from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from funnel.optim import AdagradEMA, AdamHD, Funnel, SGDHD

from .problems import clone_groups, gradient_stream, make_groups, set_grads

TOL = dict(rtol=1e-11, atol=1e-13)
OFF = dict(gamma_p=0.0, gamma_s=0.0)


def assert_same_trajectory(make_ours, make_torch, steps=100, check=None):
    ours_params, theirs_params = make_groups(), None
    theirs_params = clone_groups(ours_params)
    ours = make_ours([{"params": ours_params[0]}, {"params": ours_params[1], "lr": 0.02}])
    theirs = make_torch([{"params": theirs_params[0]}, {"params": theirs_params[1], "lr": 0.02}])
    for k, grads in enumerate(gradient_stream(ours_params, steps)):
        set_grads(ours_params, grads)
        set_grads(theirs_params, grads)
        ours.step()
        theirs.step()
        for a, b in zip(sum(ours_params, []), sum(theirs_params, [])):
            assert_close(a, b, **TOL, msg=f"step {k}")
    if check:
        check(ours)


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("momentum,nesterov", [(0.0, False), (0.9, False), (0.9, True)])
@pytest.mark.parametrize("weight_decay", [0.0, 1e-2])
def test_funnel_without_adaptation_is_sgd(momentum, nesterov, weight_decay, foreach):
    kw = dict(lr=0.05, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
    assert_same_trajectory(lambda g: Funnel(g, inner="sgd", foreach=foreach, **OFF, **kw),
                           lambda g: torch.optim.SGD(g, dampening=0.0, **kw))


@pytest.mark.parametrize("foreach", [False, True])
def test_funnel_without_adaptation_is_adagrad(foreach):
    kw = dict(eps=1e-8, initial_accumulator_value=0.1)
    assert_same_trajectory(lambda g: Funnel(g, lr=0.05, inner="adagrad", inner_kwargs=kw, foreach=foreach, **OFF),
                           lambda g: torch.optim.Adagrad(g, lr=0.05, **kw))


@pytest.mark.parametrize("foreach", [False, True])
def test_funnel_without_adaptation_is_adam(foreach):
    kw = dict(betas=(0.8, 0.99), eps=1e-6)
    assert_same_trajectory(lambda g: Funnel(g, lr=0.01, inner="adam", inner_kwargs=kw, foreach=foreach, **OFF),
                           lambda g: torch.optim.Adam(g, lr=0.01, **kw))


@pytest.mark.parametrize("foreach", [False, True])
def test_funnel_without_adaptation_is_rmsprop(foreach):
    kw = dict(alpha=0.9, eps=1e-6)
    assert_same_trajectory(lambda g: Funnel(g, lr=0.01, inner="rmsprop", inner_kwargs=kw, foreach=foreach, **OFF),
                           lambda g: torch.optim.RMSprop(g, lr=0.01, **kw))


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("momentum,nesterov", [(0.0, False), (0.9, False), (0.9, True)])
def test_sgdhd_without_hypergradient_is_sgd(momentum, nesterov, foreach):
    kw = dict(lr=0.05, momentum=momentum, nesterov=nesterov, weight_decay=1e-2)

    def rate_unchanged(opt):
        assert [float(g["lr"]) for g in opt.param_groups] == [0.05, 0.02]

    assert_same_trajectory(lambda g: SGDHD(g, hypergrad_lr=0.0, foreach=foreach, **kw),
                           lambda g: torch.optim.SGD(g, **kw), check=rate_unchanged)


@pytest.mark.parametrize("foreach", [False, True])
def test_adamhd_without_hypergradient_is_adam(foreach):
    kw = dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=1e-2)
    assert_same_trajectory(lambda g: AdamHD(g, hypergrad_lr=0.0, foreach=foreach, **kw),
                           lambda g: torch.optim.Adam(g, **kw))


@pytest.mark.parametrize("foreach", [False, True])
def test_adagrad_ema_without_ema_is_adagrad(foreach):
    assert_same_trajectory(lambda g: AdagradEMA(g, lr=0.05, beta=0.0, eps=1e-8, foreach=foreach),
                           lambda g: torch.optim.Adagrad(g, lr=0.05, eps=1e-8))


def test_probed_torch_optimizer_equals_builtin_inner():
    """The probing adapter recovers Adam's direction: Funnel(inner=torch.optim.Adam) tracks Funnel(inner="adam")
    with the adaptation on, up to the rounding of w - (w - gt)."""
    kw = dict(lr=0.01, momentum=0.9, gamma_p=2e-2, gamma_s=2e-2, inner_kwargs=dict(betas=(0.8, 0.99), eps=1e-6))
    ours_params = make_groups()
    probed_params = clone_groups(ours_params)
    ours = Funnel(sum(ours_params, []), inner="adam", **kw)
    probed = Funnel(sum(probed_params, []), inner=torch.optim.Adam, **kw)
    for grads in gradient_stream(ours_params, 30):
        set_grads(ours_params, grads)
        set_grads(probed_params, grads)
        ours.step()
        probed.step()
    for a, b in zip(sum(ours_params, []), sum(probed_params, [])):
        assert_close(a, b, rtol=1e-9, atol=1e-11)
        if a in ours.state:
            assert_close(ours.state[a]["gain"], probed.state[b]["gain"], rtol=1e-9, atol=1e-11)
            assert_close(ours.state[a]["inner"]["exp_avg"], probed.state[b]["inner"]["exp_avg"], rtol=1e-12, atol=0)
