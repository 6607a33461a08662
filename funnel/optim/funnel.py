"""Funnel: step-size adaptation by exponentiated-gradient updates (Amid, Anil, Fifty, Warmuth, arXiv 2202.00145).

Spec: ../shared/spec/algorithms.md section 1 (the paper's Algorithm 1 with its misprints corrected).
"""
from __future__ import annotations

import torch
from torch import Tensor

from ._base import (
    MAX_EXPONENT,
    NORM_EPS,
    StatefulOptimizer,
    bucket_by_device_and_dtype,
    check_choice,
    check_nonnegative,
    check_range,
    check_unit_interval,
    clipped_exp,
    dot,
    prepare_grads,
    state_dtype,
)
from .inner import Preconditioner, make_preconditioner

SCALE_GRANULARITIES = ("tensor", "global")
EGU_VARIANTS = ("exact", "log")


class Funnel(StatefulOptimizer):
    r"""Funnel over any inner optimizer: per-coordinate gains p and a step-size scale s, both adapted by
    exponentiated-gradient (EGU) steps, on top of heavy-ball momentum.

    For each parameter tensor w with gradient g (plus coupled L2 weight decay), at step t (0 before the first):

    .. code-block:: text

        gt <- inner(g)                                          # pre-conditioned direction, no lr
        p  <- clip(p * exp(gamma_p * g * m / (1 - beta^t)))     # eq. 5 (normalize_gains: sign(g) * sign(m), eq. 11)
        s  <- clip(s * exp(gamma_s * <g, d>))                   # eq. 6 (normalize_scale: cosine of g and d, eq. 12)
        m  <- beta * m + (1 - beta) * gt
        nu <- mu * nu + lr * p * gt
        d  <- nu                                                # Nesterov: d <- mu * nu + lr * p * gt
        w  <- w - s * d

    where d in the scale rule is the previous step's d (the last displacement was -s * d).

    ======================  ==========  =====================================================================
    Argument                Symbol      Meaning
    ======================  ==========  =====================================================================
    lr                      eta         base learning rate
    momentum                mu          heavy-ball momentum of the velocity nu
    nesterov                            apply mu * nu + lr * p * gt instead of nu (the paper: "can be done")
    weight_decay                        coupled L2, added to g before the inner optimizer
    inner                   D           "sgd", "adagrad", "adagrad_ema", "adam", "rmsprop", "sadam", a
                                        Preconditioner, or a torch.optim.Optimizer class (probed, slower)
    inner_kwargs                        the inner optimizer's own settings (eps, betas, ...)
    gamma_p                 gamma_p     gain learning rate (0 switches the gains off)
    gamma_s                 gamma_s     scale learning rate (0 switches the scale off)
    beta                    beta        decay of the EMA m of gt
    normalize_gains                     sign rule (eq. 11) instead of eq. 5
    normalize_scale                     cosine rule (eq. 12) instead of eq. 6
    gain_range, scale_range             clipping intervals (the paper: [0, 1e3])
    scale_granularity                   "tensor": one scale per tensor; "global": one per param group
    egu                                 "exact" EGU, or "log": Schraudolph's update (exponent times p or s)
    maximize                            maximize the objective
    foreach                             foreach kernels (default: when all params are on CUDA)
    ======================  ==========  =====================================================================

    State per parameter: ``step`` (int), ``gain`` p, ``scale`` s (0-d; one shared tensor per group with
    ``scale_granularity="global"``), ``ema`` m, ``momentum_buffer`` nu, ``last_direction`` d (Nesterov only) and
    the inner optimizer's state under ``inner``. Floating state has the parameter's dtype for fp32/fp64
    parameters and is fp32 for bf16/fp16 ones. Exponents are clipped to +-80 so that no step creates inf or nan
    (not in the paper; it never binds for sane gammas).

    Example:
        >>> opt = Funnel(model.parameters(), lr=0.1, momentum=0.9, gamma_p=1e-4, gamma_s=1e-3)
        >>> loss_fn(model(x), y).backward(); opt.step(); opt.zero_grad()
    """

    def __init__(self, params, lr: float, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0, inner="sgd", inner_kwargs: dict | None = None,
                 gamma_p: float = 1e-4, gamma_s: float = 1e-3, beta: float = 0.9,
                 normalize_gains: bool = True, normalize_scale: bool = True,
                 gain_range: tuple[float, float] = (0.0, 1e3), scale_range: tuple[float, float] = (0.0, 1e3),
                 scale_granularity: str = "tensor", egu: str = "exact", maximize: bool = False,
                 foreach: bool | None = None):
        self.inner: Preconditioner = make_preconditioner(inner, inner_kwargs)
        defaults = dict(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay,
                        gamma_p=gamma_p, gamma_s=gamma_s, beta=beta, normalize_gains=normalize_gains,
                        normalize_scale=normalize_scale, gain_range=tuple(gain_range),
                        scale_range=tuple(scale_range), scale_granularity=scale_granularity, egu=egu,
                        maximize=maximize, foreach=foreach)
        super().__init__(params, defaults)

    def _check_group(self, group):
        for name in ("lr", "weight_decay", "gamma_p", "gamma_s"):
            check_nonnegative(name, group[name])
        check_unit_interval("momentum", group["momentum"])
        check_unit_interval("beta", group["beta"])
        if group["nesterov"] and group["momentum"] <= 0:
            raise ValueError("Invalid nesterov=True with momentum=0 (Nesterov needs a momentum > 0)")
        check_range("gain_range", group["gain_range"])
        check_range("scale_range", group["scale_range"])
        check_choice("scale_granularity", group["scale_granularity"], SCALE_GRANULARITIES)
        check_choice("egu", group["egu"], EGU_VARIANTS)

    def _init_state(self, group, param, state):
        dtype = state_dtype(param)
        state["step"] = 0
        state["gain"] = torch.ones_like(param, dtype=dtype, memory_format=torch.preserve_format)
        state["scale"] = self._new_scale(group, param, dtype)
        state["ema"] = torch.zeros_like(param, dtype=dtype, memory_format=torch.preserve_format)
        state["momentum_buffer"] = torch.zeros_like(param, dtype=dtype, memory_format=torch.preserve_format)
        if group["nesterov"]:
            state["last_direction"] = torch.zeros_like(param, dtype=dtype, memory_format=torch.preserve_format)
        state["inner"] = self.inner.init_state(param, dtype)

    def _new_scale(self, group, param, dtype) -> Tensor:
        if group["scale_granularity"] == "global":
            shared = self._group_scale(group)
            if shared is not None:
                return shared
        return torch.ones((), dtype=dtype, device=param.device)

    def _group_scale(self, group) -> Tensor | None:
        for p in group["params"]:
            if "scale" in self.state.get(p, {}):
                return self.state[p]["scale"]
        return None

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        # A checkpoint holds one copy of a group's global scale per parameter (and torch's casting may have
        # untied them): make every tensor of the group share one scale object again.
        for group in self.param_groups:
            if group["scale_granularity"] == "global":
                shared = self._group_scale(group)
                for p in group["params"]:
                    if "scale" in self.state.get(p, {}):
                        self.state[p]["scale"] = shared

    def _step_group(self, group, params, grads, states):
        hyper = {k: group[k] for k in ("lr", "momentum", "nesterov", "weight_decay", "gamma_p", "gamma_s", "beta",
                                       "normalize_gains", "normalize_scale", "gain_range", "scale_range",
                                       "scale_granularity", "egu", "maximize")}
        funnel(params, grads, states, inner=self.inner, foreach=self._use_foreach(group, params), **hyper)


def funnel(params: list[Tensor], grads: list[Tensor], states: list[dict], *, inner: Preconditioner,
           foreach: bool, **hyper) -> None:
    """Functional Funnel: one step over tensors that all have a gradient, with their (initialized) states."""
    (_multi_tensor_funnel if foreach else _single_tensor_funnel)(params, grads, states, inner=inner, **hyper)


def _update_scale(s: Tensor, dots: Tensor, g_norms: Tensor | None, d_norms: Tensor | None, *, gamma_s: float,
                  normalize_scale: bool, egu: str, scale_range: tuple[float, float]) -> None:
    """s <- clip(s * exp(gamma_s * <g, d>)) (eq. 6), or with the cosine (eq. 12); in place.

    Works on one 0-d scale or elementwise on stacked scales with stacked dot products and norms.
    """
    x = dots / ((g_norms + NORM_EPS) * (d_norms + NORM_EPS)) if normalize_scale else dots
    x = x * gamma_s
    if egu == "log":
        x = x * s
    s.mul_(clipped_exp(x)).clamp_(*scale_range)


def _update_global_scale(s: Tensor, dots: list[Tensor], g_norms: list[Tensor] | None,
                         d_norms: list[Tensor] | None, **scale_kw) -> None:
    """One scale for the whole group: the dot product and the norms run over all its tensors."""
    total = torch.stack([x.to(s.device) for x in dots]).sum()
    g_norm = d_norm = None
    if scale_kw["normalize_scale"]:
        g_norm = torch.linalg.vector_norm(torch.stack([x.to(s.device) for x in g_norms]))
        d_norm = torch.linalg.vector_norm(torch.stack([x.to(s.device) for x in d_norms]))
    _update_scale(s, total, g_norm, d_norm, **scale_kw)


def _last_direction(state: dict, nesterov: bool) -> Tensor:
    """The direction d applied at the previous step (w moved by -s * d); zero before the first step."""
    return state["last_direction"] if nesterov else state["momentum_buffer"]


def _gain_coefficient(gamma_p: float, beta: float, normalize_gains: bool, step: int) -> float:
    """gamma_p, times the EMA bias correction 1 / (1 - beta^t) for the unnormalized rule (m_hat = 0 at t = 0)."""
    if normalize_gains:
        return gamma_p
    return gamma_p / (1 - beta**step) if step > 0 else 0.0


def _single_tensor_funnel(params, grads, states, *, inner, lr, momentum, nesterov, weight_decay, gamma_p, gamma_s,
                          beta, normalize_gains, normalize_scale, gain_range, scale_range, scale_granularity, egu,
                          maximize):
    grads = prepare_grads(params, grads, weight_decay, maximize, foreach=False)

    # Scale (step 3 of the spec) needs only g and the old direction, so it can go first; "global" needs all tensors.
    lasts = [_last_direction(st, nesterov) for st in states]
    dots = [dot(g, d) for g, d in zip(grads, lasts)]
    g_norms = [torch.linalg.vector_norm(g) for g in grads] if normalize_scale else [None] * len(grads)
    d_norms = [torch.linalg.vector_norm(d) for d in lasts] if normalize_scale else [None] * len(grads)
    scale_kw = dict(gamma_s=gamma_s, normalize_scale=normalize_scale, egu=egu, scale_range=scale_range)
    if scale_granularity == "global":
        _update_global_scale(states[0]["scale"], dots, g_norms, d_norms, **scale_kw)
    else:
        for st, x, gn, dn in zip(states, dots, g_norms, d_norms):
            _update_scale(st["scale"], x, gn, dn, **scale_kw)

    for param, g, st in zip(params, grads, states):
        t = st["step"]
        gt = inner.direction(param, g, st["inner"], t + 1)

        gain, m = st["gain"], st["ema"]
        x = g.sign().mul_(m.sign()) if normalize_gains else g * m
        x.mul_(_gain_coefficient(gamma_p, beta, normalize_gains, t))
        if egu == "log":
            x.mul_(gain)
        gain.mul_(clipped_exp(x)).clamp_(*gain_range)

        m.lerp_(gt, 1 - beta)
        nu = st["momentum_buffer"].mul_(momentum).addcmul_(gain, gt, value=lr)
        if nesterov:
            d = st["last_direction"].copy_(nu).mul_(momentum).addcmul_(gain, gt, value=lr)
        else:
            d = nu
        param.addcmul_(d, st["scale"], value=-1)
        st["step"] = t + 1


def _multi_tensor_funnel(params, grads, states, *, inner, lr, momentum, nesterov, weight_decay, gamma_p, gamma_s,
                         beta, normalize_gains, normalize_scale, gain_range, scale_range, scale_granularity, egu,
                         maximize):
    buckets = bucket_by_device_and_dtype(params)
    grads = prepare_grads(params, grads, weight_decay, maximize, foreach=True)

    # Scale: per-tensor dot products and norms per bucket, then one vectorized update of all scales.
    lasts = [_last_direction(st, nesterov) for st in states]
    dots: list[Tensor] = [None] * len(params)
    g_norms: list[Tensor] = [None] * len(params)
    d_norms: list[Tensor] = [None] * len(params)
    for idx in buckets:
        for i in idx:
            dots[i] = dot(grads[i], lasts[i])
        if normalize_scale:
            for i, gn, dn in zip(idx, torch._foreach_norm([grads[i] for i in idx]),
                                 torch._foreach_norm([lasts[i] for i in idx])):
                g_norms[i], d_norms[i] = gn, dn
    scale_kw = dict(gamma_s=gamma_s, normalize_scale=normalize_scale, egu=egu, scale_range=scale_range)
    scales = [st["scale"] for st in states]
    if scale_granularity == "global":
        _update_global_scale(scales[0], dots, g_norms, d_norms, **scale_kw)
    else:
        for idx in buckets:
            s = torch.stack([scales[i] for i in idx])
            gn = torch.stack([g_norms[i] for i in idx]) if normalize_scale else None
            dn = torch.stack([d_norms[i] for i in idx]) if normalize_scale else None
            _update_scale(s, torch.stack([dots[i] for i in idx]), gn, dn, **scale_kw)
            torch._foreach_copy_([scales[i] for i in idx], list(s))

    for idx in buckets:
        p_ = [params[i] for i in idx]
        g_ = [grads[i] for i in idx]
        st_ = [states[i] for i in idx]
        steps = [st["step"] for st in st_]
        gains, ms, nus = [st["gain"] for st in st_], [st["ema"] for st in st_], [st["momentum_buffer"] for st in st_]

        gts = inner.foreach_direction(p_, g_, [st["inner"] for st in st_], [t + 1 for t in steps])

        if normalize_gains:
            x = torch._foreach_sign(g_)
            torch._foreach_mul_(x, torch._foreach_sign(ms))
        else:
            x = torch._foreach_mul(g_, ms)
        torch._foreach_mul_(x, [_gain_coefficient(gamma_p, beta, normalize_gains, t) for t in steps])
        if egu == "log":
            torch._foreach_mul_(x, gains)
        torch._foreach_clamp_min_(x, -MAX_EXPONENT)
        torch._foreach_clamp_max_(x, MAX_EXPONENT)
        torch._foreach_exp_(x)
        torch._foreach_mul_(gains, x)
        torch._foreach_clamp_min_(gains, gain_range[0])
        torch._foreach_clamp_max_(gains, gain_range[1])

        torch._foreach_lerp_(ms, gts, 1 - beta)
        torch._foreach_mul_(nus, momentum)
        torch._foreach_addcmul_(nus, gains, gts, value=lr)
        if nesterov:
            ds = [st["last_direction"] for st in st_]
            torch._foreach_copy_(ds, nus)
            torch._foreach_mul_(ds, momentum)
            torch._foreach_addcmul_(ds, gains, gts, value=lr)
        else:
            ds = nus
        torch._foreach_sub_(p_, torch._foreach_mul(ds, [scales[i] for i in idx]))
        for st in st_:
            st["step"] += 1

