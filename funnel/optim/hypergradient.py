"""Hypergradient descent (Baydin et al., ICLR 2018, arXiv 1703.04782): SGD-HD, SGDN-HD and Adam-HD.

The update: docs/algorithms.md, section 5. One rate alpha per param group, kept in ``group["lr"]`` as a 0-d
tensor after the first step (so the update never syncs with the host; schedulers and `optimizer_stats` read it).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from ._base import NORM_EPS, bucket_by_device_and_dtype, check_nonnegative, check_unit_interval, compiled, dot, \
    layout, prepare_grad, prepare_grads, state_dtype, step_tensor
from .inner import AdamPreconditioner, Preconditioner, SGDPreconditioner
from .preconditioned import PreconditionedOptimizer


@dataclass(frozen=True)
class HDSettings:
    """What the fused step of a group needs besides its tensors and its rate; frozen: one compiled graph a record."""

    preconditioner: Preconditioner
    momentum: float
    nesterov: bool
    weight_decay: float
    hypergrad_lr: float
    multiplicative: bool
    min_lr: float | None
    stores_direction: bool  # whether last_direction is its own buffer (else it is the momentum buffer)


def new_rate(alpha: Tensor, grads: list[Tensor], lasts: list[Tensor], hypergrad_lr: float, multiplicative: bool,
             min_lr: float | None) -> Tensor:
    """alpha after the hypergradient step, from every tensor's <g, d_prev> (docs/algorithms.md, section 5)."""
    h = torch.stack([dot(g, d).to(alpha) for g, d in zip(grads, lasts)]).sum()
    if multiplicative:
        g_norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g).to(alpha) for g in grads]))
        d_norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(d).to(alpha) for d in lasts]))
        alpha = alpha * (1 + hypergrad_lr * h / ((g_norm + NORM_EPS) * (d_norm + NORM_EPS)))
    else:
        alpha = alpha + hypergrad_lr * h
    return alpha.clamp_min(min_lr) if min_lr is not None else alpha


def base_direction(pre: Preconditioner, momentum: float, nesterov: bool, param: Tensor, grad: Tensor, state: dict,
                   step) -> Tensor:
    """The base method's direction d: the preconditioned gradient, then (SGDN) momentum on top; `step` is 1-based."""
    d = pre.direction(param, grad, state, step)
    if momentum > 0:
        buf = state["momentum_buffer"].mul_(momentum).add_(d)
        d = d.add(buf, alpha=momentum) if nesterov else buf
    return d


def _group_update(params, grads, states, lasts, alpha, steps, *, settings: HDSettings) -> Tensor:
    """One HD step of a whole group, as the fused path compiles it: every dot product, the new rate, then each
    tensor's update in one elementwise pass. Returns the new rate."""
    c = settings
    grads = [prepare_grad(p, g, c.weight_decay, False) for p, g in zip(params, grads)]
    alpha = new_rate(alpha, grads, lasts, c.hypergrad_lr, c.multiplicative, c.min_lr)
    for i in range(len(params)):
        d = base_direction(c.preconditioner, c.momentum, c.nesterov, params[i], grads[i], states[i], steps[i] + 1)
        if c.stores_direction:
            lasts[i].copy_(d)
        params[i].addcmul_(d, alpha, value=-1)
    return alpha


class _Hypergradient(PreconditionedOptimizer):
    """w <- w - alpha * d, with d the base method's direction and alpha adapted by the hypergradient
    h = sum over the group of <g, d_prev>, computed before any parameter moves:
    additive alpha <- alpha + hypergrad_lr * h; multiplicative alpha <- alpha * (1 + hypergrad_lr * h / (|g| |d_prev|)).
    """

    # The optimizer owns group["lr"]: a learning-rate schedule writing it would undo the adaptation.
    adapts_lr: ClassVar[bool] = True
    # Whether the base method's direction is always a newly made tensor (then it is stored by reference, saving a
    # copy per step), or may alias the gradient or state (then it is copied).
    fresh_directions: ClassVar[bool] = False

    def _check_group(self, group):
        super()._check_group(group)
        check_nonnegative("hypergrad_lr", group["hypergrad_lr"])
        check_unit_interval("momentum", group["momentum"])
        if group["nesterov"] and group["momentum"] <= 0:
            raise ValueError("Invalid nesterov=True with momentum=0 (Nesterov needs a momentum > 0)")
        min_lr = group["min_lr"]
        if min_lr is not None and not (isinstance(min_lr, (int, float)) and min_lr == min_lr):
            raise ValueError(f"Invalid min_lr: {min_lr!r} (must be None or a number)")
        devices = sorted({str(p.device) for p in group["params"]})
        if group["fused"] and len(devices) > 1:
            raise ValueError(f"Invalid fused=True for a param group on several devices ({', '.join(devices)}): the "
                             "compiled step needs every dot product of the group on one device; use foreach=True")

    @staticmethod
    def _last_key(group) -> str:
        # Plain momentum applies d = buf, so the previous direction is the momentum buffer itself.
        return "momentum_buffer" if group["momentum"] > 0 and not group["nesterov"] else "last_direction"

    def _init_state(self, group, param, state):
        super()._init_state(group, param, state)
        zeros = lambda: torch.zeros_like(param, dtype=state_dtype(param), memory_format=torch.preserve_format)
        if group["momentum"] > 0:
            state["momentum_buffer"] = zeros()
        state.setdefault(self._last_key(group), zeros())

    def _step_group(self, group, params, grads, states):
        key = self._last_key(group)
        if group["fused"]:
            group["lr"] = self._fused_step(group, params, grads, states, key)
            return
        foreach = self._use_foreach(group, params)
        grads = prepare_grads(params, grads, group["weight_decay"], False, foreach)
        alpha = new_rate(self._rate(group, grads), grads, [st[key] for st in states], group["hypergrad_lr"],
                         group["multiplicative"], group["min_lr"])
        group["lr"] = alpha
        if foreach:
            for idx in bucket_by_device_and_dtype(params):
                self._foreach_apply(group, [params[i] for i in idx], [grads[i] for i in idx],
                                    [states[i] for i in idx], alpha.to(params[idx[0]].device), key)
        else:
            for p, g, st in zip(params, grads, states):
                d = base_direction(self._preconditioner(group), group["momentum"], group["nesterov"], p, g, st,
                                   st["step"] + 1)
                if key == "last_direction":
                    self._store(group, [st], [d])
                p.addcmul_(d, alpha.to(p.device), value=-1)
                st["step"] += 1

    @staticmethod
    def _rate(group, grads) -> Tensor:
        """alpha as a 0-d tensor (a number before the first step), in float64 if any gradient is."""
        dtype = torch.float64 if any(g.dtype == torch.float64 for g in grads) else torch.float32
        return torch.as_tensor(group["lr"], dtype=dtype, device=grads[0].device)

    def _settings(self, group) -> HDSettings:
        values = (group["momentum"], group["nesterov"], group["weight_decay"], group["hypergrad_lr"],
                  group["multiplicative"], group["min_lr"], self._last_key(group) == "last_direction")
        pre = self._preconditioner(group)
        return self._built(("hd", pre, values), lambda: HDSettings(pre, *values))

    def _fused_step(self, group, params, grads, states, key) -> Tensor:
        # each state without its int step, which the graph would otherwise specialize on
        tensors = [{k: v for k, v in st.items() if k != "step"} for st in states]
        update = compiled(_group_update, self._settings(group), layout(params) + layout(grads))
        alpha = update(params, grads, tensors, [st[key] for st in states], self._rate(group, grads),
                       step_tensor([st["step"] for st in states], states[0][key]))
        for st in states:
            st["step"] += 1
        return alpha

    def _foreach_apply(self, group, params, grads, states, alpha, key):
        ds = self._preconditioner(group).foreach_direction(params, grads, states, [st["step"] + 1 for st in states])
        mu = group["momentum"]
        if mu > 0:
            bufs = [st["momentum_buffer"] for st in states]
            torch._foreach_mul_(bufs, mu)
            torch._foreach_add_(bufs, ds)
            ds = torch._foreach_add(ds, bufs, alpha=mu) if group["nesterov"] else bufs
        if key == "last_direction":
            self._store(group, states, ds)
        torch._foreach_addcmul_(params, ds, [alpha] * len(params), value=-1)
        for st in states:
            st["step"] += 1

    def _store(self, group, states, ds) -> None:
        """Keep each applied direction as the state's last_direction, for the next step's hypergradient."""
        if self.fresh_directions or group["nesterov"]:  # d = g + mu * buf is new too
            for st, d in zip(states, ds):
                st["last_direction"] = d
        else:
            torch._foreach_copy_([st["last_direction"] for st in states], ds)


class SGDHD(_Hypergradient):
    """SGD-HD; with momentum, SGDN-HD (PyTorch's momentum convention buf <- mu buf + g, d = buf, or
    d = g + mu buf with Nesterov).

    State: ``step``, ``momentum_buffer`` (momentum > 0) and ``last_direction`` (the d applied at the previous step;
    not kept for plain momentum, where it is the momentum buffer). ``min_lr`` optionally floors alpha, which the
    additive rule may otherwise drive negative (the paper allows it).

    Example:
        >>> opt = SGDHD(model.parameters(), lr=1e-3, momentum=0.9, nesterov=True, hypergrad_lr=1e-3)
    """

    preconditioner_class = SGDPreconditioner

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0, hypergrad_lr: float = 1e-3, multiplicative: bool = False,
                 min_lr: float | None = None, foreach: bool | None = None, fused: bool = False):
        super().__init__(params, dict(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay,
                                      hypergrad_lr=hypergrad_lr, multiplicative=multiplicative, min_lr=min_lr,
                                      foreach=foreach, fused=fused))


class AdamHD(_Hypergradient):
    """Adam-HD: d = m_hat / (sqrt(v_hat) + eps), alpha adapted by hypergradient descent.

    State: ``step``, ``exp_avg``, ``exp_avg_sq``, ``last_direction``.

    Example:
        >>> opt = AdamHD(model.parameters(), lr=1e-3, hypergrad_lr=1e-7)
    """

    preconditioner_class = AdamPreconditioner
    preconditioner_keys = ("betas", "eps")
    fresh_directions = True

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, hypergrad_lr: float = 1e-7, multiplicative: bool = False,
                 min_lr: float | None = None, foreach: bool | None = None, fused: bool = False):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, momentum=0.0, nesterov=False,
                                      weight_decay=weight_decay, hypergrad_lr=hypergrad_lr,
                                      multiplicative=multiplicative, min_lr=min_lr, foreach=foreach, fused=fused))
