"""Funnel: step-size adaptation by exponentiated-gradient updates (Amid, Anil, Fifty, Warmuth, arXiv 2202.00145).

The exact update, and how this reads the paper's ambiguities: docs/algorithms.md, section 2 (the paper's
Algorithm 1 with its misprints corrected).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

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
    compiled,
    dot,
    layout,
    prepare_grad,
    prepare_grads,
    scalar_tensor,
    state_dtype,
    step_tensor,
)
from .inner import BUILTIN_PRECONDITIONERS, Preconditioner, inner_setting, make_preconditioner

SCALE_GRANULARITIES = ("tensor", "global")
EGU_VARIANTS = ("exact", "log")


@dataclass(frozen=True)
class FunnelSettings:
    """What one step of a param group needs besides its tensors and its lr: the group's settings, with the inner
    optimizer built. Frozen and hashable, so that the compiled path keeps one kernel per distinct record."""

    inner: Preconditioner
    momentum: float
    nesterov: bool
    weight_decay: float
    gamma_p: float
    gamma_s: float
    beta: float
    normalize_gains: bool
    normalize_scale: bool
    gain_range: tuple[float, float]
    scale_range: tuple[float, float]
    egu: str
    maximize: bool

    @property
    def scale_kw(self) -> dict:
        return dict(gamma_s=self.gamma_s, normalize_scale=self.normalize_scale, egu=self.egu,
                    scale_range=self.scale_range)


_SETTING_KEYS = tuple(f for f in FunnelSettings.__dataclass_fields__ if f != "inner")  # read from the group


def _frozen(value):
    """`value` as a hashable key: dicts and lists become sorted tuples."""
    if isinstance(value, dict):
        return tuple(sorted((k, _frozen(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    return value


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
                                        Preconditioner, or a torch.optim.Optimizer class (probed, slower);
                                        a param group may name its own
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
    fused                               torch.compile each bucket's update into one graph, called once per
                                        step (the fastest path; the first step compiles, with static shapes;
                                        built-in inner optimizers and per-tensor scales only)
    ======================  ==========  =====================================================================

    Every argument except ``params`` is a param-group setting, as in torch.optim: a group may override any of
    them (its own ``inner`` and ``inner_kwargs`` included), and all of them are saved by ``state_dict``. A group
    keeps a built-in inner optimizer as its name and a torch.optim class as its import path, so its checkpoint
    loads with ``torch.load(weights_only=True)``; a custom Preconditioner object is kept (and pickled) as is.

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
                 foreach: bool | None = None, fused: bool = False):
        defaults = dict(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay, inner=inner,
                        inner_kwargs=dict(inner_kwargs or {}), gamma_p=gamma_p, gamma_s=gamma_s, beta=beta,
                        normalize_gains=normalize_gains, normalize_scale=normalize_scale,
                        gain_range=tuple(gain_range), scale_range=tuple(scale_range),
                        scale_granularity=scale_granularity, egu=egu, maximize=maximize, foreach=foreach,
                        fused=fused)
        super().__init__(params, defaults)

    def preconditioner(self, group: dict) -> Preconditioner:
        """The inner optimizer of `group`, built from its ``inner`` and ``inner_kwargs``."""
        inner, kwargs = group["inner"], group["inner_kwargs"]
        return self._built(("inner", inner, _frozen(kwargs)), lambda: make_preconditioner(inner, kwargs))

    def settings(self, group: dict) -> FunnelSettings:
        """The settings record of `group` (everything its step needs except lr)."""
        values = tuple(_frozen(group[k]) for k in _SETTING_KEYS)
        inner = self.preconditioner(group)
        return self._built(("settings", inner, values),
                           lambda: FunnelSettings(inner, **dict(zip(_SETTING_KEYS, values))))

    def _check_group(self, group):
        group["gain_range"], group["scale_range"] = tuple(group["gain_range"]), tuple(group["scale_range"])
        group["inner"], group["inner_kwargs"] = inner_setting(group["inner"], group["inner_kwargs"])
        self.preconditioner(group)  # validates inner and inner_kwargs
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
        if group["fused"]:
            if group["scale_granularity"] != "tensor":
                raise ValueError("Invalid fused=True with scale_granularity='global': the compiled update works one "
                                 "tensor at a time; use foreach=True for the global ablation")
            if type(self.preconditioner(group)) not in BUILTIN_PRECONDITIONERS.values():
                raise ValueError(f"Invalid fused=True with inner={group['inner']!r}: only the built-in inner "
                                 f"optimizers ({', '.join(BUILTIN_PRECONDITIONERS)}) can be compiled")

    def _init_state(self, group, param, state):
        dtype = state_dtype(param)
        state["step"] = 0
        state["gain"] = torch.ones_like(param, dtype=dtype, memory_format=torch.preserve_format)
        state["scale"] = self._new_scale(group, param, dtype)
        state["ema"] = torch.zeros_like(param, dtype=dtype, memory_format=torch.preserve_format)
        state["momentum_buffer"] = torch.zeros_like(param, dtype=dtype, memory_format=torch.preserve_format)
        if group["nesterov"]:
            state["last_direction"] = torch.zeros_like(param, dtype=dtype, memory_format=torch.preserve_format)
        state["inner"] = self.preconditioner(group).init_state(param, dtype)

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

    def _check_saved_settings(self, settings, group, where):
        """A state_dict never chooses code: its groups may name a built-in inner optimizer or the one this optimizer
        was constructed with, nothing else (an import path from a checkpoint would import and run any module)."""
        inner = settings["inner"]
        builtin = isinstance(inner, str) and inner in BUILTIN_PRECONDITIONERS
        if not builtin and inner != group["inner"]:
            raise ValueError(f"{where} names inner={inner!r}, this optimizer uses inner={group['inner']!r}: a "
                             "state_dict may name only a built-in inner optimizer "
                             f"({', '.join(BUILTIN_PRECONDITIONERS)}) or the one the optimizer was constructed "
                             "with; construct it with that inner optimizer if you trust the file")
        super()._check_saved_settings(settings, group, where)

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
        funnel(params, grads, states, self.settings(group), group["lr"],
               global_scale=group["scale_granularity"] == "global", foreach=self._use_foreach(group, params),
               fused=group["fused"])


def funnel(params: list[Tensor], grads: list[Tensor], states: list[dict], settings: FunnelSettings, lr, *,
           global_scale: bool = False, foreach: bool = False, fused: bool = False) -> None:
    """Functional Funnel: one step over tensors that all have a gradient, with their (initialized) states; with
    `global_scale`, the tensors share one scale (every state holds the same 0-d tensor)."""
    if fused:
        if global_scale:
            raise ValueError("the fused path keeps one scale per tensor; use foreach for a global scale")
        _fused_funnel(params, grads, states, settings, lr)
    elif foreach:
        _multi_tensor_funnel(params, grads, states, settings, lr, global_scale)
    else:
        _single_tensor_funnel(params, grads, states, settings, lr, global_scale)


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


def _gain_coefficient(gamma_p: float, beta: float, normalize_gains: bool, step):
    """gamma_p, times the EMA bias correction 1 / (1 - beta^t) for the unnormalized rule. At t = 0 the EMA is
    still exactly 0, so m_hat = 0 whatever finite coefficient multiplies it: the denominator is floored instead of
    branching, which keeps the compiled path free of data-dependent control flow. `step` is an int or a 0-d tensor."""
    if normalize_gains:
        return gamma_p
    denominator = 1 - beta**step
    floored = denominator.clamp_min(1e-30) if isinstance(denominator, Tensor) else max(denominator, 1e-30)
    return gamma_p / floored


def _tensor_update(param: Tensor, grad: Tensor, gain: Tensor, ema: Tensor, nu: Tensor, last: Tensor | None,
                   scale: Tensor, inner_state: dict, lr, step, *, settings: FunnelSettings, update_scale: bool) -> None:
    """Steps 1-6 of docs/algorithms.md, section 2.2, for one tensor, in place. The per-tensor path calls it with Python
    numbers for `lr` and `step` (the steps taken so far); the fused path calls its torch.compile'd form with 0-d
    tensors, so that a changing lr or step never triggers a recompilation. `last` is the stored direction (Nesterov
    only)."""
    c = settings
    g = prepare_grad(param, grad, c.weight_decay, c.maximize)
    d_prev = last if c.nesterov else nu
    if update_scale:  # step 3; "global" granularity updates the group's scale before the per-tensor loop
        norms = (torch.linalg.vector_norm(g), torch.linalg.vector_norm(d_prev)) if c.normalize_scale \
            else (None, None)
        _update_scale(scale, dot(g, d_prev), *norms, **c.scale_kw)

    gt = c.inner.direction(param, g, inner_state, step + 1)  # step 1

    x = g.sign().mul_(ema.sign()) if c.normalize_gains else g * ema  # step 2, from the old EMA
    x = x.mul_(_gain_coefficient(c.gamma_p, c.beta, c.normalize_gains, step))
    if c.egu == "log":
        x = x.mul_(gain)
    gain.mul_(clipped_exp(x)).clamp_(*c.gain_range)

    ema.lerp_(gt, 1 - c.beta)  # step 4
    lr_gt = gt * lr if isinstance(lr, Tensor) else gt  # a tensor lr multiplies; a number goes in addcmul's value
    value = 1.0 if isinstance(lr, Tensor) else lr
    nu.mul_(c.momentum).addcmul_(gain, lr_gt, value=value)  # step 5, with the new gains
    d = last.copy_(nu).mul_(c.momentum).addcmul_(gain, lr_gt, value=value) if c.nesterov else nu
    param.addcmul_(d, scale, value=-1)  # step 6, with the new scale


def _state_args(state: dict, nesterov: bool) -> tuple:
    return (state["gain"], state["ema"], state["momentum_buffer"], state["last_direction"] if nesterov else None,
            state["scale"], state["inner"])


def _single_tensor_funnel(params, grads, states, settings: FunnelSettings, lr, global_scale: bool):
    c = settings
    if global_scale:
        prepared = prepare_grads(params, grads, c.weight_decay, c.maximize, foreach=False)
        lasts = [_last_direction(st, c.nesterov) for st in states]
        norms = ([torch.linalg.vector_norm(g) for g in prepared], [torch.linalg.vector_norm(d) for d in lasts]) \
            if c.normalize_scale else (None, None)
        _update_global_scale(states[0]["scale"], [dot(g, d) for g, d in zip(prepared, lasts)], *norms, **c.scale_kw)
    for param, grad, st in zip(params, grads, states):
        _tensor_update(param, grad, *_state_args(st, c.nesterov), lr, st["step"], settings=c,
                       update_scale=not global_scale)
        st["step"] += 1


def _group_update(params, grads, gains, emas, nus, lasts, scales, inner_states, lr, steps, *,
                  settings: FunnelSettings) -> None:
    """`_tensor_update` over every tensor of a bucket: what the fused path compiles, as one graph (`_base.compiled`)."""
    for i in range(len(params)):
        _tensor_update(params[i], grads[i], gains[i], emas[i], nus[i], lasts[i], scales[i], inner_states[i], lr,
                       steps[i], settings=settings, update_scale=True)


def _fused_funnel(params, grads, states, settings: FunnelSettings, lr):
    for idx in bucket_by_device_and_dtype(params):
        p_, g_, st_ = [params[i] for i in idx], [grads[i] for i in idx], [states[i] for i in idx]
        like = st_[0]["gain"]
        update = compiled(_group_update, settings, layout(p_) + layout(g_))
        update(p_, g_, *[list(t) for t in zip(*(_state_args(st, settings.nesterov) for st in st_))],
               scalar_tensor(lr, like), step_tensor([st["step"] for st in st_], like))
        for st in st_:
            st["step"] += 1


def _multi_tensor_funnel(params, grads, states, settings: FunnelSettings, lr, global_scale: bool):
    c = settings
    momentum, nesterov, gamma_p, beta = c.momentum, c.nesterov, c.gamma_p, c.beta
    normalize_gains, normalize_scale, gain_range, egu = c.normalize_gains, c.normalize_scale, c.gain_range, c.egu
    buckets = bucket_by_device_and_dtype(params)
    grads = prepare_grads(params, grads, c.weight_decay, c.maximize, foreach=True)

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
    scales = [st["scale"] for st in states]
    if global_scale:
        _update_global_scale(scales[0], dots, g_norms, d_norms, **c.scale_kw)
    else:
        for idx in buckets:
            s = torch.stack([scales[i] for i in idx])
            gn = torch.stack([g_norms[i] for i in idx]) if normalize_scale else None
            dn = torch.stack([d_norms[i] for i in idx]) if normalize_scale else None
            _update_scale(s, torch.stack([dots[i] for i in idx]), gn, dn, **c.scale_kw)
            torch._foreach_copy_([scales[i] for i in idx], list(s))

    for idx in buckets:
        p_ = [params[i] for i in idx]
        g_ = [grads[i] for i in idx]
        st_ = [states[i] for i in idx]
        steps = [st["step"] for st in st_]
        gains, ms, nus = [st["gain"] for st in st_], [st["ema"] for st in st_], [st["momentum_buffer"] for st in st_]

        gts = c.inner.foreach_direction(p_, g_, [st["inner"] for st in st_], [t + 1 for t in steps])

        # Gains. Fewer memory passes than the per-tensor path, same result up to rounding: exp(c * x) is
        # pow(e^c, x), and clamps are skipped where they provably cannot bind (the exponent of the sign rule is
        # at most gamma_p (times the gain bound for the log variant); a product of positive factors stays >= 0).
        if normalize_gains:
            x = torch._foreach_sign(g_)
            torch._foreach_mul_(x, torch._foreach_sign(ms))
            if egu == "log":
                torch._foreach_mul_(x, gains)
            bound = gamma_p * (gain_range[1] if egu == "log" else 1.0)
            if bound > MAX_EXPONENT:
                torch._foreach_mul_(x, gamma_p)
                torch._foreach_clamp_min_(x, -MAX_EXPONENT)
                torch._foreach_clamp_max_(x, MAX_EXPONENT)
                torch._foreach_exp_(x)
            else:
                x = torch._foreach_pow(math.exp(gamma_p), x)
        else:
            x = torch._foreach_mul(g_, ms)
            torch._foreach_mul_(x, [_gain_coefficient(gamma_p, beta, normalize_gains, t) for t in steps])
            if egu == "log":
                torch._foreach_mul_(x, gains)
            torch._foreach_clamp_min_(x, -MAX_EXPONENT)
            torch._foreach_clamp_max_(x, MAX_EXPONENT)
            torch._foreach_exp_(x)
        torch._foreach_mul_(gains, x)
        if gain_range[0] > 0:
            torch._foreach_clamp_min_(gains, gain_range[0])
        if gain_range[1] < math.inf:
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
        torch._foreach_addcmul_(p_, ds, [scales[i] for i in idx], value=-1)
        for st in st_:
            st["step"] += 1
