"""Funnel(fused=True): the torch.compile'd update of a whole bucket gives the per-tensor path's result, does not
recompile when the lr or the step change, and refuses what it cannot compile."""
from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from funnel.optim import SGDHD, Funnel

from .problems import clone_groups, gradient_stream, make_groups, set_grads

CONFIGS = {
    "momentum-normalized": dict(momentum=0.9, inner="sgd"),
    "adam-unnormalized-nesterov": dict(momentum=0.9, nesterov=True, inner="adam", normalize_gains=False,
                                       normalize_scale=False, weight_decay=1e-2, maximize=True),
    "adagrad_ema-log": dict(inner="adagrad_ema", egu="log", gain_range=(0.5, 2.0)),
}


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_fused_equals_per_tensor(name, dtype):
    """In float64, so that a difference in the update would stand out from the rounding that fusion reorders
    (fp32 differs by ~1e-5 after a dozen steps); bf16 parameters check the dtype handling with fp32 state."""
    if dtype == torch.bfloat16 and name != "momentum-normalized":
        pytest.skip("one bf16 case is enough")
    a = make_groups(dtype)
    b = clone_groups(a)
    kw = dict(lr=0.02, gamma_p=1e-2, gamma_s=1e-2, **CONFIGS[name])
    reference = Funnel(sum(a, []), foreach=False, **kw)
    fused = Funnel(sum(b, []), fused=True, **kw)
    counters = torch._dynamo.utils.counters
    for k, grads in enumerate(gradient_stream(a, 12)):
        set_grads(a, grads)
        set_grads(b, grads)
        for opt in (reference, fused):
            opt.param_groups[0]["lr"] = 0.02 * (0.9**k)  # a schedule: the compiled update must not specialize on it
            opt.step()
        if k == 3:
            graphs = counters["stats"]["unique_graphs"]
    assert counters["stats"]["unique_graphs"] == graphs, "the fused update recompiled for a new lr or step"
    tol = dict(rtol=2e-2, atol=1e-2) if dtype == torch.bfloat16 else dict(rtol=1e-10, atol=1e-12)
    for pa, pb in zip(sum(a, []), sum(b, [])):
        assert_close(pb, pa, **tol)
        if pa in reference.state:
            sa, sb = reference.state[pa], fused.state[pb]
            assert sa["step"] == sb["step"]
            for key in ("gain", "scale", "ema", "momentum_buffer"):
                assert_close(sb[key], sa[key], **(dict(rtol=1e-4, atol=1e-5) if dtype == torch.bfloat16 else tol),
                             msg=key)
                assert sb[key].dtype == (torch.float32 if dtype == torch.bfloat16 else dtype)


def test_a_non_contiguous_tensor_is_compiled_too():
    """A channels_last weight goes through the compiled update (static shapes and strides) and keeps its layout."""
    w = torch.randn(4, 3, 5, 5, dtype=torch.float64).to(memory_format=torch.channels_last).requires_grad_()
    v = w.detach().clone().to(memory_format=torch.channels_last).requires_grad_()
    fused, reference = Funnel([w], lr=0.1, momentum=0.9, fused=True), Funnel([v], lr=0.1, momentum=0.9)
    for _ in range(3):
        g = torch.randn(4, 3, 5, 5, dtype=torch.float64).to(memory_format=torch.channels_last)
        w.grad, v.grad = g.clone(), g.clone()
        fused.step()
        reference.step()
    assert_close(w, v, rtol=1e-12, atol=1e-14)
    assert w.is_contiguous(memory_format=torch.channels_last)
    assert fused.state[w]["gain"].is_contiguous(memory_format=torch.channels_last)


def test_fused_refuses_what_it_cannot_compile():
    p = [torch.zeros(2, requires_grad=True)]
    with pytest.raises(ValueError, match="scale_granularity='global'"):
        Funnel(p, lr=0.1, fused=True, scale_granularity="global")
    with pytest.raises(ValueError, match="only the built-in inner optimizers"):
        Funnel(p, lr=0.1, fused=True, inner=torch.optim.Adam)


def test_many_configurations_in_one_process_do_not_exhaust_the_compile_cache():
    """torch.compile allows 8 cache entries per code object: a sweep of Funnel configurations in one process (a
    Hydra multirun, a benchmark) must still work."""
    for k in range(10):
        w = torch.ones(5, dtype=torch.float64, requires_grad=True)
        opt = Funnel([w], lr=0.1, momentum=0.5, gamma_p=1e-3 * (k + 1), fused=True)
        w.grad = torch.ones(5, dtype=torch.float64)
        opt.step()
        assert w.detach().allclose(torch.full((5,), 0.9, dtype=torch.float64))


@pytest.mark.parametrize("module,make", [
    ("funnel", lambda ps: Funnel(ps, lr=0.1, momentum=0.9, fused=True)),
    ("hypergradient", lambda ps: SGDHD(ps, lr=0.1, momentum=0.9, nesterov=True, fused=True))])
def test_one_compiled_call_per_step_for_all_tensors(module, make, monkeypatch):
    """The fused step calls one compiled graph for a bucket, not one per tensor (a compiled call costs ~0.25 ms on
    a CPU); the graph is compiled once and reused by later steps."""
    import importlib

    mod = importlib.import_module(f"funnel.optim.{module}")
    calls, builds = [], []

    real = mod.compiled

    def counting(update, settings, layout):
        builds.append(layout)
        fn = real(update, settings, layout)
        return lambda *args: (calls.append(1), fn(*args))[1]

    monkeypatch.setattr(mod, "compiled", counting)
    params = [torch.randn(k + 1, 3, requires_grad=True) for k in range(10)]
    opt = make(params)
    counters = torch._dynamo.utils.counters
    before = counters["stats"]["unique_graphs"]
    for _ in range(3):
        for p in params:
            p.grad = torch.randn_like(p)
        opt.step()
    assert len(calls) == 3 and len(set(builds)) == 1
    assert counters["stats"]["unique_graphs"] - before == 1
