"""AdagradEMA, Sadam and SAMSGrad against the paper-literal float64 reference."""
from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from funnel.optim import AdagradEMA, SAMSGrad, Sadam
from funnel.optim.reference import DirectionReference

from .problems import gradient_stream, make_groups, set_grads

CASES = {
    "adagrad_ema": (AdagradEMA, dict(lr=0.05, beta=0.8, eps=1e-8, initial_accumulator_value=0.1, weight_decay=1e-2),
                    "adagrad_ema"),
    "sadam": (Sadam, dict(lr=0.01, betas=(0.8, 0.99), softplus_beta=10.0, weight_decay=1e-2), "sadam"),
    "samsgrad": (SAMSGrad, dict(lr=0.01, softplus_beta=50.0), "sadam"),
}


@pytest.mark.parametrize("foreach", [False, True], ids=["single", "foreach"])
@pytest.mark.parametrize("name", list(CASES))
def test_matches_reference(name, foreach):
    cls, kw, inner = CASES[name]
    groups = make_groups()
    params = sum(groups, [])
    opt = cls(params, foreach=foreach, **kw)
    ref_kw = dict(kw)
    lr, wd = ref_kw.pop("lr"), ref_kw.pop("weight_decay", 0.0)
    if cls is SAMSGrad:
        ref_kw["amsgrad"] = True
    ref = DirectionReference(params, inner, lr, wd, **ref_kw)
    for k, grads in enumerate(gradient_stream(groups, 50)):
        set_grads(groups, grads)
        opt.step()
        ref.step(sum(grads, []))
        for i, p in enumerate(params):
            assert_close(p.detach(), ref.params[i], rtol=1e-10, atol=1e-12, msg=f"step {k} param {i}")


def test_samsgrad_keeps_the_running_max():
    w = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = SAMSGrad([w], lr=0.01)
    for g in (10.0, 0.1, 0.1):
        w.grad = torch.tensor([g], dtype=torch.float64)
        opt.step()
    st = opt.state[w]
    assert st["max_exp_avg_sq"].item() > st["exp_avg_sq"].item()
    assert st["max_exp_avg_sq"].item() == pytest.approx(0.001 * 100)  # (1 - b2) * 10^2 after step 1
