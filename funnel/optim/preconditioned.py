"""Optimizers that step along an inner direction, w <- w - lr * inner(g): AdagradEMA, Sadam and SAMSGrad, and
(in hypergradient.py) the hypergradient optimizers. Each builds its preconditioner of `inner.py` from the param
group's own hyperparameters, so Funnel and these share one implementation of each direction, while the
hyperparameters live in `param_groups` as torch users expect (per group, checkpointed)."""
from __future__ import annotations

from typing import ClassVar

import torch

from ._base import StatefulOptimizer, bucket_by_device_and_dtype, check_nonnegative, prepare_grads, state_dtype
from .inner import AdagradEMAPreconditioner, Preconditioner, SadamPreconditioner


class PreconditionedOptimizer(StatefulOptimizer):
    """w <- w - lr * gt with gt = preconditioner(g + weight_decay * w).

    Subclasses name the `preconditioner_class` and which group keys configure it (`preconditioner_keys`).
    State: ``step`` (int) and the preconditioner's buffers, at the top level of the parameter's state.
    """

    preconditioner_class: ClassVar[type[Preconditioner]]
    preconditioner_keys: ClassVar[tuple[str, ...]] = ()

    def _preconditioner(self, group: dict) -> Preconditioner:
        values = tuple(group[k] for k in self.preconditioner_keys)
        return self._built((self.preconditioner_class, values),
                           lambda: self.preconditioner_class(**dict(zip(self.preconditioner_keys, values))))

    def _check_group(self, group):
        check_nonnegative("lr", group["lr"])
        check_nonnegative("weight_decay", group["weight_decay"])
        if "betas" in group:
            group["betas"] = tuple(group["betas"])
        self._preconditioner(group)  # its constructor validates its own hyperparameters

    def _init_state(self, group, param, state):
        state["step"] = 0
        state.update(self._preconditioner(group).init_state(param, state_dtype(param)))

    def _step_group(self, group, params, grads, states):
        foreach = self._use_foreach(group, params)
        grads = prepare_grads(params, grads, group["weight_decay"], False, foreach)
        pre, lr = self._preconditioner(group), group["lr"]
        if foreach:
            for idx in bucket_by_device_and_dtype(params):
                p_, st_ = [params[i] for i in idx], [states[i] for i in idx]
                gts = pre.foreach_direction(p_, [grads[i] for i in idx], st_, [st["step"] + 1 for st in st_])
                torch._foreach_add_(p_, gts, alpha=-lr)
                for st in st_:
                    st["step"] += 1
        else:
            for p, g, st in zip(params, grads, states):
                p.add_(pre.direction(p, g, st, st["step"] + 1), alpha=-lr)
                st["step"] += 1


class AdagradEMA(PreconditionedOptimizer):
    """AdaGrad with an EMA on the pre-conditioned gradients, the Funnel paper's ResNet-50 baseline:
    G <- G + g^2;  e <- beta e + (1 - beta) g / (sqrt(G) + eps);  w <- w - lr e.

    State: ``step``, ``sum`` (G), ``ema`` (e)."""

    preconditioner_class = AdagradEMAPreconditioner
    preconditioner_keys = ("beta", "eps", "initial_accumulator_value")

    def __init__(self, params, lr: float = 1e-3, beta: float = 0.9, eps: float = 1e-10,
                 initial_accumulator_value: float = 0.0, weight_decay: float = 0.0, foreach: bool | None = None):
        super().__init__(params, dict(lr=lr, beta=beta, eps=eps, initial_accumulator_value=initial_accumulator_value,
                                      weight_decay=weight_decay, foreach=foreach))


class Sadam(PreconditionedOptimizer):
    """Sadam (Tong, Liang, Bi, arXiv 1908.00700): Adam with the denominator sqrt(v) + eps replaced by
    softplus_beta(sqrt(v)), on the non-bias-corrected v as in the authors' code:
    w <- w - lr * sqrt(1 - b2^t) / (1 - b1^t) * m / softplus_beta(sqrt(v)).  With ``amsgrad=True``: SAMSGrad.

    State: ``step``, ``exp_avg`` (m), ``exp_avg_sq`` (v) and, with amsgrad, ``max_exp_avg_sq``."""

    preconditioner_class = SadamPreconditioner
    preconditioner_keys = ("betas", "softplus_beta", "amsgrad")

    def __init__(self, params, lr: float = 1e-2, betas: tuple[float, float] = (0.9, 0.999),
                 softplus_beta: float = 50.0, weight_decay: float = 0.0, amsgrad: bool = False,
                 foreach: bool | None = None):
        super().__init__(params, dict(lr=lr, betas=betas, softplus_beta=softplus_beta, weight_decay=weight_decay,
                                      amsgrad=amsgrad, foreach=foreach))


class SAMSGrad(Sadam):
    """Sadam with AMSGrad's running maximum of v (Tong et al.)."""

    def __init__(self, params, lr: float = 1e-2, betas: tuple[float, float] = (0.9, 0.999),
                 softplus_beta: float = 50.0, weight_decay: float = 0.0, foreach: bool | None = None):
        super().__init__(params, lr=lr, betas=betas, softplus_beta=softplus_beta, weight_decay=weight_decay,
                         amsgrad=True, foreach=foreach)
