"""SGDHD / AdamHD against the paper-literal float64 reference."""
from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from funnel.optim import AdamHD, SGDHD
from funnel.optim.reference import HypergradientReference

from .problems import gradient_stream, make_groups, set_grads

TOL = dict(rtol=1e-10, atol=1e-12)

VARIANTS = {
    "sgd": ("sgd", dict(lr=0.01, hypergrad_lr=1e-3)),
    "sgd-multiplicative": ("sgd", dict(lr=0.01, hypergrad_lr=0.05, multiplicative=True)),
    "sgdn": ("sgd", dict(lr=0.01, momentum=0.9, nesterov=True, hypergrad_lr=1e-3, weight_decay=1e-2)),
    "sgd-momentum": ("sgd", dict(lr=0.01, momentum=0.9, hypergrad_lr=1e-3)),
    "adam": ("adam", dict(lr=0.01, hypergrad_lr=1e-4, betas=(0.8, 0.99))),
    "adam-multiplicative": ("adam", dict(lr=0.01, hypergrad_lr=0.05, multiplicative=True, eps=1e-6)),
}


# the fused path compiles a graph per group and parameter layout: a few variants cover its branches
PATHS = [(name, path) for name in VARIANTS for path in ("single", "foreach")] + \
    [(name, "fused") for name in ("sgd-multiplicative", "sgdn", "sgd-momentum", "adam")]


@pytest.mark.parametrize("name,path", PATHS)
def test_matches_reference(name, path):
    base, kw = VARIANTS[name]
    groups = make_groups()
    ref = HypergradientReference([{"params": groups[0]}, {"params": groups[1], "lr": 0.005}], base, **kw)
    cls = AdamHD if base == "adam" else SGDHD
    opt = cls([{"params": groups[0]}, {"params": groups[1], "lr": 0.005}], foreach=path == "foreach",
              fused=path == "fused", **kw)
    rates = []
    for k, grads in enumerate(gradient_stream(groups, 50)):
        set_grads(groups, grads)
        opt.step()
        ref.step(grads)
        for gi, group in enumerate(opt.param_groups):
            assert torch.is_tensor(group["lr"])
            assert_close(group["lr"].double(), torch.tensor(ref.groups[gi]["alpha"], dtype=torch.float64), **TOL,
                         msg=f"step {k} group {gi}: rate")
            for pi, p in enumerate(groups[gi]):
                assert_close(p.detach(), ref.groups[gi]["params"][pi], **TOL, msg=f"step {k} group {gi} param {pi}")
        rates.append(float(opt.param_groups[0]["lr"]))
    assert abs(rates[-1] - kw["lr"]) > 1e-5, "the rate never adapted: the test exercised nothing"


@pytest.mark.parametrize("cls,base", [(SGDHD, "sgd"), (AdamHD, "adam")])
def test_min_lr_floors_the_rate(cls, base):
    """Gradients that flip sign every step make <g, d_prev> negative: the additive rule drives alpha down to
    the floor, and the reference agrees on every step."""
    w = torch.ones(3, dtype=torch.float64, requires_grad=True)
    kw = dict(lr=0.01, hypergrad_lr=0.01 if base == "sgd" else 1e-3, min_lr=0.004)
    opt = cls([w], **kw)
    ref = HypergradientReference([{"params": [w]}], base, **kw)
    rates = []
    for k in range(20):
        g = (-1.0) ** k * torch.tensor([1.0, 2.0, -0.5], dtype=torch.float64)
        w.grad = g.clone()
        opt.step()
        ref.step([[g]])
        assert_close(w.detach(), ref.groups[0]["params"][0], **TOL)
        rates.append(float(opt.param_groups[0]["lr"]))
        assert rates[-1] == pytest.approx(ref.groups[0]["alpha"], rel=1e-12)
    assert min(rates) == 0.004 and rates[-1] == 0.004


def test_hypergradient_uses_all_tensors_before_any_moves():
    """Two tensors, one group: the rate that moves the second tensor includes the first tensor's <g, d_prev>
    (the official AdamHD updated it inside the per-tensor loop)."""
    a = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    opt = SGDHD([a, b], lr=0.1, hypergrad_lr=0.5)
    for g in (torch.tensor([1.0, 0.0], dtype=torch.float64), torch.tensor([1.0, 0.0], dtype=torch.float64)):
        a.grad, b.grad = g.clone(), g.clone()
        opt.step()
    # step 2: h = <g_a, g_a> + <g_b, g_b> = 2, alpha = 0.1 + 0.5 * 2 = 1.1, both tensors move by alpha * g
    assert float(opt.param_groups[0]["lr"]) == pytest.approx(1.1)
    assert a[0].item() == pytest.approx(-0.1 - 1.1)
    assert b[0].item() == pytest.approx(-0.1 - 1.1)


def test_fused_refuses_a_group_on_several_devices():
    """The hypergradient sums <g, d_prev> over the whole group: the compiled step needs it on one device."""
    params = [torch.zeros(3, requires_grad=True), torch.zeros(3, device="meta", requires_grad=True)]
    with pytest.raises(ValueError, match=r"fused=True for a param group on several devices \(cpu, meta\)"):
        SGDHD(params, lr=0.1, fused=True)
    SGDHD(params, lr=0.1, foreach=True)  # the foreach path takes it
