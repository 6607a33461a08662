"""Checkpoint round trips: save after 20 steps, load into a fresh optimizer on cloned parameters, then 20 more
steps in lockstep must stay bit-identical."""
from __future__ import annotations

import io

import pytest
import torch

from funnel.optim import REGISTRY, AdagradEMA, AdamHD, Funnel, Sadam, SGDHD, build_optimizer
from funnel.optim.registry import PEER

from .problems import clone_groups, gradient_stream, make_groups, set_grads


def roundtrip(state_dict: dict) -> dict:
    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def assert_state_equal(a, b, where=""):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_state_equal(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):  # DoG keeps lists of tensors in its param groups
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_state_equal(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def check_lockstep(make, dtype=torch.float32, steps=20, peer=False, edit=None, make_restored=None):
    """`peer`: the optional packages' optimizers get what they support: one learning rate for all groups (Prodigy
    refuses different ones), a gradient for every parameter (DoG and D-Adaptation need one), train mode first
    and a checkpoint at the averaged point (Schedule-Free). `edit` changes the saved state_dict before it is loaded
    into `make_restored` (default `make`), whose group settings the checkpoint's then replace."""
    params = make_groups(dtype)
    stream = list(gradient_stream(params, 2 * steps, every_param=peer))
    groups = lambda ps: [{"params": ps[0]}, {"params": ps[1]}] if peer else \
        [{"params": ps[0]}, {"params": ps[1], "lr": 0.01}]
    opt = make(groups(params))
    if peer and hasattr(opt, "train"):
        opt.train()
    for grads in stream[:steps]:
        set_grads(params, grads)
        opt.step()
    averaged = peer and callable(getattr(opt, "eval", None))
    if averaged:  # Schedule-Free saves at its averaged point and resumes from there, as the runner does
        opt.eval()
    saved = roundtrip(opt.state_dict())
    if edit:
        edit(saved)
    restored_params = clone_groups(params)
    restored = (make_restored or make)(groups(restored_params))
    restored.load_state_dict(saved)
    if averaged:
        opt.train()
        restored.train()
    for grads in stream[steps:]:
        for ps in (params, restored_params):
            set_grads(ps, grads)
        opt.step()
        restored.step()
        for a, b in zip(sum(params, []), sum(restored_params, [])):
            assert torch.equal(a, b)
    for a, b in zip(sum(params, []), sum(restored_params, [])):
        assert_state_equal(opt.state.get(a, {}), restored.state.get(b, {}), "state")
    for ga, gb in zip(opt.param_groups, restored.param_groups):
        assert_state_equal({k: v for k, v in ga.items() if k != "params"},
                           {k: v for k, v in gb.items() if k != "params"}, "group")
    return opt, restored


@pytest.mark.parametrize("name", [name for name, spec in REGISTRY.items() if not spec.cannot_resume])
def test_lockstep_every_registered_optimizer(name):
    """Every optimizer whose state survives a state_dict round trip (the registry names those that do not, and
    tests/train/test_peers.py checks that they still do not)."""
    check_lockstep(lambda groups: build_optimizer(groups, name), peer=REGISTRY[name].description.startswith(PEER))


@pytest.mark.parametrize("kw", [dict(scale_granularity="global", momentum=0.9),
                                dict(nesterov=True, momentum=0.9, inner="adam", foreach=True),
                                dict(inner=torch.optim.Adam, momentum=0.5),
                                dict(inner="sadam", inner_kwargs=dict(amsgrad=True), normalize_gains=False)],
                         ids=["global-scale", "nesterov-adam-foreach", "probed-torch-adam", "samsgrad-unnormalized"])
def test_lockstep_funnel_variants(kw):
    opt, restored = check_lockstep(lambda groups: Funnel(groups, lr=0.05, gamma_p=1e-2, gamma_s=1e-2, **kw))
    if kw.get("scale_granularity") == "global":
        for group in restored.param_groups:
            scales = {id(restored.state[p]["scale"]) for p in group["params"] if restored.state.get(p)}
            assert len(scales) == 1, "the group's global scale is no longer one shared tensor after loading"


def test_a_groups_own_inner_optimizer_is_saved_and_restored():
    """Group 1 runs Adam under a Funnel whose default is SGD. The checkpoint (loaded with weights_only=True) holds
    that as the group's setting: an optimizer built all-SGD takes it back from the checkpoint and steps on
    bit-identically, Adam's state included."""
    def make(groups):
        groups[1].update(inner="adam", inner_kwargs={"betas": (0.8, 0.99)})
        return Funnel(groups, lr=0.05, gamma_p=1e-2, gamma_s=1e-2, momentum=0.9)

    opt, restored = check_lockstep(make, make_restored=lambda groups: Funnel(groups, lr=0.05, momentum=0.9))
    assert [g["inner"] for g in restored.param_groups] == ["sgd", "adam"]
    assert restored.param_groups[1]["inner_kwargs"] == {"betas": (0.8, 0.99)}
    adam_state = [restored.state[p]["inner"] for p in restored.param_groups[1]["params"] if restored.state.get(p)]
    assert adam_state and all(set(st) == {"exp_avg", "exp_avg_sq"} for st in adam_state)


def test_a_checkpoint_from_before_a_setting_existed_loads_with_its_default():
    """A state_dict whose groups lack settings added later (here inner, inner_kwargs and egu) loads: each missing
    setting takes the optimizer's default, and training continues exactly as with a current checkpoint."""
    def drop(saved):
        for group in saved["param_groups"]:
            for key in ("inner", "inner_kwargs", "egu"):
                del group[key]

    make = lambda groups: Funnel(groups, lr=0.05, gamma_p=1e-2, gamma_s=1e-2, inner="adagrad", egu="exact")
    opt, restored = check_lockstep(make, edit=drop)
    assert all(g["inner"] == "adagrad" and g["egu"] == "exact" for g in restored.param_groups)


def float_state_dtypes(opt) -> set[torch.dtype]:
    out = set()

    def visit(d):
        for k, v in d.items():
            if isinstance(v, dict):
                visit(v)
            elif isinstance(v, torch.Tensor) and v.is_floating_point() and k != "step":
                out.add(v.dtype)

    for st in opt.state.values():
        visit(st)
    return out


MAKERS = {
    "funnel-adam": lambda g: Funnel(g, lr=0.01, momentum=0.9, inner="adam"),
    "funnel-adagrad-foreach": lambda g: Funnel(g, lr=0.05, inner="adagrad", foreach=True),
    "funnel-probed-adam": lambda g: Funnel(g, lr=0.01, inner=torch.optim.Adam),
    "sgdn_hd": lambda g: SGDHD(g, lr=0.01, momentum=0.9, nesterov=True),
    "adam_hd": lambda g: AdamHD(g, lr=0.01),
    "sadam": lambda g: Sadam(g, lr=0.01),
    "adagrad_ema": lambda g: AdagradEMA(g, lr=0.01),
}


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64])
@pytest.mark.parametrize("name", list(MAKERS))
def test_meta_state_dtype_survives_roundtrip(name, dtype):
    opt, restored = check_lockstep(MAKERS[name], dtype=dtype, steps=5)
    expected = {torch.float64} if dtype == torch.float64 else {torch.float32}
    assert float_state_dtypes(opt) == expected
    assert float_state_dtypes(restored) == expected
    # and a fresh load (without stepping afterwards) keeps it too
    params = make_groups(dtype)
    fresh = MAKERS[name]([{"params": params[0]}, {"params": params[1], "lr": 0.01}])
    fresh.load_state_dict(roundtrip(opt.state_dict()))
    assert float_state_dtypes(fresh) == expected


def stepped(make, params, steps=2):
    opt = make(params)
    for _ in range(steps):
        for p in params:
            p.grad = torch.ones_like(p)
        opt.step()
    return opt


def test_a_state_dict_of_another_optimizer_or_model_is_refused_at_load_time():
    """torch accepts these and fails (or silently differs) at the next step: a KeyError for a missing buffer, a
    shape error deep in an update. The mismatch is named at load time instead."""
    params = [torch.zeros(3, requires_grad=True), torch.zeros(2, 2, requires_grad=True)]
    funnel = stepped(lambda ps: Funnel(ps, lr=0.1, momentum=0.9), params)
    with pytest.raises(ValueError, match=r"SGDHD.load_state_dict: parameter 0 has state .*'gain'.* but this "
                                         r"optimizer keeps .*another optimizer"):
        SGDHD([torch.zeros(3, requires_grad=True), torch.zeros(2, 2, requires_grad=True)]).load_state_dict(
            roundtrip(funnel.state_dict()))
    with pytest.raises(ValueError, match=r"parameter 1, gain has shape \(2, 2\), the parameter \(4,\): .*model"):
        Funnel([torch.zeros(3, requires_grad=True), torch.zeros(4, requires_grad=True)], lr=0.1).load_state_dict(
            roundtrip(funnel.state_dict()))
    with pytest.raises(ValueError, match="the state_dict has 1 param groups, this optimizer 2"):
        Funnel([{"params": [torch.zeros(3, requires_grad=True)]}, {"params": [torch.zeros(1, requires_grad=True)]}],
               lr=0.1).load_state_dict(roundtrip(funnel.state_dict()))
    # the same optimizer over parameters of the same shapes loads, as before
    Funnel([torch.zeros(3, requires_grad=True), torch.zeros(2, 2, requires_grad=True)], lr=0.1).load_state_dict(
        roundtrip(funnel.state_dict()))
