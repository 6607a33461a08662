"""Inner optimizers: they turn a gradient g into a pre-conditioned direction gt and never touch the parameters.

Funnel passes gt to its meta-update; AdagradEMA, Sadam and AdamHD apply it with their own step size. Each built-in
has a plain per-tensor `direction` and a foreach `foreach_direction` that must agree. The returned tensors are
read-only for the caller: they may alias the gradient or the preconditioner's own state. `direction` takes the step
as an int or as a 0-d tensor (Funnel's compiled path passes a tensor so that torch.compile does not specialize on it).

The directions, formula by formula: docs/algorithms.md, section 3.
"""
from __future__ import annotations

import importlib
import math
from dataclasses import dataclass, fields
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from ._base import check_betas, check_nonnegative, check_unit_interval


class Preconditioner:
    """The interface of an inner optimizer.

    Implement `init_state` and `direction`; `foreach_direction` defaults to a loop over `direction`.
    `step` is the 1-based index of the step being taken, for bias corrections.
    """

    name: ClassVar[str] = "custom"

    def init_state(self, param: Tensor, dtype: torch.dtype) -> dict:
        return {}

    def direction(self, param: Tensor, grad: Tensor, state: dict, step: int) -> Tensor:
        raise NotImplementedError

    def foreach_direction(self, params: list[Tensor], grads: list[Tensor], states: list[dict],
                          steps: list[int]) -> list[Tensor]:
        return [self.direction(p, g, s, t) for p, g, s, t in zip(params, grads, states, steps)]


def _zeros(param: Tensor, dtype: torch.dtype) -> Tensor:
    return torch.zeros_like(param, dtype=dtype, memory_format=torch.preserve_format)


def _update_moments(state: dict, grad: Tensor, betas: tuple[float, float]) -> tuple[Tensor, Tensor]:
    """Adam's m <- b1 m + (1 - b1) g and v <- b2 v + (1 - b2) g^2, in place; returns (m, v)."""
    beta1, beta2 = betas
    exp_avg = state["exp_avg"].lerp_(grad, 1 - beta1)
    return exp_avg, state["exp_avg_sq"].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)


def _foreach_update_moments(states: list[dict], grads: list[Tensor], betas: tuple[float, float]):
    """`_update_moments` over lists; returns (ms, vs)."""
    beta1, beta2 = betas
    exp_avgs, exp_avg_sqs = [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states]
    torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
    torch._foreach_mul_(exp_avg_sqs, beta2)
    torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1 - beta2)
    return exp_avgs, exp_avg_sqs


@dataclass(frozen=True)
class SGDPreconditioner(Preconditioner):
    """gt = g."""

    name: ClassVar[str] = "sgd"

    def direction(self, param, grad, state, step):
        return grad

    def foreach_direction(self, params, grads, states, steps):
        return grads


@dataclass(frozen=True)
class AdagradPreconditioner(Preconditioner):
    """G <- G + g^2;  gt = g / (sqrt(G) + eps)."""

    name: ClassVar[str] = "adagrad"
    eps: float = 1e-10
    initial_accumulator_value: float = 0.0

    def __post_init__(self):
        check_nonnegative("eps", self.eps)
        check_nonnegative("initial_accumulator_value", self.initial_accumulator_value)

    def init_state(self, param, dtype):
        return {"sum": torch.full_like(param, self.initial_accumulator_value, dtype=dtype,
                                       memory_format=torch.preserve_format)}

    def direction(self, param, grad, state, step):
        total = state["sum"].addcmul_(grad, grad)
        return grad / total.sqrt().add_(self.eps)

    def foreach_direction(self, params, grads, states, steps):
        sums = [s["sum"] for s in states]
        torch._foreach_addcmul_(sums, grads, grads)
        std = torch._foreach_sqrt(sums)
        torch._foreach_add_(std, self.eps)
        return torch._foreach_div(grads, std)


@dataclass(frozen=True)
class AdagradEMAPreconditioner(Preconditioner):
    """The paper's ResNet-50 baseline: G <- G + g^2;  e <- b e + (1 - b) g / (sqrt(G) + eps);  gt = e."""

    name: ClassVar[str] = "adagrad_ema"
    beta: float = 0.9
    eps: float = 1e-10
    initial_accumulator_value: float = 0.0

    def __post_init__(self):
        check_unit_interval("beta", self.beta)
        check_nonnegative("eps", self.eps)
        check_nonnegative("initial_accumulator_value", self.initial_accumulator_value)

    def init_state(self, param, dtype):
        return {"sum": torch.full_like(param, self.initial_accumulator_value, dtype=dtype,
                                       memory_format=torch.preserve_format),
                "ema": _zeros(param, dtype)}

    def direction(self, param, grad, state, step):
        total = state["sum"].addcmul_(grad, grad)
        return state["ema"].lerp_(grad / total.sqrt().add_(self.eps), 1 - self.beta)

    def foreach_direction(self, params, grads, states, steps):
        sums, emas = [s["sum"] for s in states], [s["ema"] for s in states]
        torch._foreach_addcmul_(sums, grads, grads)
        std = torch._foreach_sqrt(sums)
        torch._foreach_add_(std, self.eps)
        torch._foreach_lerp_(emas, torch._foreach_div(grads, std), 1 - self.beta)
        return emas


@dataclass(frozen=True)
class AdamPreconditioner(Preconditioner):
    """m, v as in Adam;  gt = m_hat / (sqrt(v_hat) + eps)."""

    name: ClassVar[str] = "adam"
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8

    def __post_init__(self):
        check_betas("betas", self.betas)
        check_nonnegative("eps", self.eps)

    def init_state(self, param, dtype):
        return {"exp_avg": _zeros(param, dtype), "exp_avg_sq": _zeros(param, dtype)}

    def direction(self, param, grad, state, step):
        beta1, beta2 = self.betas
        exp_avg, exp_avg_sq = _update_moments(state, grad, self.betas)
        denom = (exp_avg_sq.sqrt() / (1 - beta2**step) ** 0.5).add_(self.eps)
        return (exp_avg / denom).div_(1 - beta1**step)

    def foreach_direction(self, params, grads, states, steps):
        beta1, beta2 = self.betas
        exp_avgs, exp_avg_sqs = _foreach_update_moments(states, grads, self.betas)
        # m_hat / (sqrt(v_hat) + eps) = m * (sqrt(bc2) / bc1) / (sqrt(v) + eps sqrt(bc2)): two passes fewer
        denom = torch._foreach_sqrt(exp_avg_sqs)
        torch._foreach_add_(denom, [self.eps * math.sqrt(1 - beta2**t) for t in steps])
        out = torch._foreach_div(exp_avgs, denom)
        torch._foreach_mul_(out, [math.sqrt(1 - beta2**t) / (1 - beta1**t) for t in steps])
        return out


@dataclass(frozen=True)
class RMSpropPreconditioner(Preconditioner):
    """v <- a v + (1 - a) g^2;  gt = g / (sqrt(v) + eps)."""

    name: ClassVar[str] = "rmsprop"
    alpha: float = 0.99
    eps: float = 1e-8

    def __post_init__(self):
        check_unit_interval("alpha", self.alpha)
        check_nonnegative("eps", self.eps)

    def init_state(self, param, dtype):
        return {"square_avg": _zeros(param, dtype)}

    def direction(self, param, grad, state, step):
        square_avg = state["square_avg"].mul_(self.alpha).addcmul_(grad, grad, value=1 - self.alpha)
        return grad / square_avg.sqrt().add_(self.eps)

    def foreach_direction(self, params, grads, states, steps):
        square_avgs = [s["square_avg"] for s in states]
        torch._foreach_mul_(square_avgs, self.alpha)
        torch._foreach_addcmul_(square_avgs, grads, grads, value=1 - self.alpha)
        denom = torch._foreach_sqrt(square_avgs)
        torch._foreach_add_(denom, self.eps)
        return torch._foreach_div(grads, denom)


@dataclass(frozen=True)
class SadamPreconditioner(Preconditioner):
    """Sadam / SAMSGrad (docs/algorithms.md, section 4.2):
    gt = sqrt(1 - b2^t) / (1 - b1^t) * m / softplus_beta(sqrt(v)).

    v is not bias-corrected inside the softplus and there is no eps (the authors' code). With amsgrad the running
    maximum of v replaces v.
    """

    name: ClassVar[str] = "sadam"
    # softplus returns x itself above beta * x > threshold; torch's default 20 is off from the formula by up to
    # log(1 + e^-20) / beta, 40 is exact to float64 rounding and still far from overflow.
    SOFTPLUS_THRESHOLD: ClassVar[float] = 40.0
    betas: tuple[float, float] = (0.9, 0.999)
    softplus_beta: float = 50.0
    amsgrad: bool = False

    def __post_init__(self):
        check_betas("betas", self.betas)
        if not (isinstance(self.softplus_beta, (int, float)) and self.softplus_beta > 0):
            raise ValueError(f"Invalid softplus_beta: {self.softplus_beta!r} (must be > 0)")

    def init_state(self, param, dtype):
        state = {"exp_avg": _zeros(param, dtype), "exp_avg_sq": _zeros(param, dtype)}
        if self.amsgrad:
            state["max_exp_avg_sq"] = _zeros(param, dtype)
        return state

    def _step_size(self, step):
        beta1, beta2 = self.betas
        return (1 - beta2**step) ** 0.5 / (1 - beta1**step)

    def direction(self, param, grad, state, step):
        exp_avg, v = _update_moments(state, grad, self.betas)
        if self.amsgrad:
            v = torch.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
        denom = F.softplus(v.sqrt(), beta=self.softplus_beta, threshold=self.SOFTPLUS_THRESHOLD)
        return (exp_avg / denom).mul_(self._step_size(step))

    def foreach_direction(self, params, grads, states, steps):
        exp_avgs, exp_avg_sqs = _foreach_update_moments(states, grads, self.betas)
        v = exp_avg_sqs
        if self.amsgrad:
            v = [s["max_exp_avg_sq"] for s in states]
            torch._foreach_maximum_(v, exp_avg_sqs)
        # softplus has no foreach kernel; one call per tensor
        denom = [F.softplus(x, beta=self.softplus_beta, threshold=self.SOFTPLUS_THRESHOLD)
                 for x in torch._foreach_sqrt(v)]
        out = torch._foreach_div(exp_avgs, denom)
        torch._foreach_mul_(out, [self._step_size(t) for t in steps])
        return out


class TorchOptimizerPreconditioner(Preconditioner):
    """Any torch.optim.Optimizer class as an inner optimizer, by probing: run it with lr=1 on a copy of the
    parameter and take the difference. Its state is that optimizer's per-parameter state.

    Slower than the built-ins (a fresh optimizer object and a parameter copy per tensor per step) and exact only
    up to rounding of w - (w - gt); use a built-in where one exists.
    """

    name: ClassVar[str] = "torch"

    def __init__(self, optimizer_class: type[torch.optim.Optimizer], **kwargs):
        if "lr" in kwargs:
            raise ValueError("inner_kwargs must not set 'lr' for a probed torch optimizer: its direction is "
                             "measured at lr=1 and Funnel's own lr applies")
        self.optimizer_class = optimizer_class
        self.kwargs = kwargs
        # construct once now so that bad kwargs fail at Funnel's construction, not at the first step
        optimizer_class([torch.zeros(1, requires_grad=True)], lr=1.0, **kwargs)

    def __repr__(self):
        return f"TorchOptimizerPreconditioner({self.optimizer_class.__name__}, **{self.kwargs})"

    def direction(self, param, grad, state, step):
        shadow = param.detach().to(dtype=grad.dtype, copy=True)
        shadow.grad = grad
        probe = self.optimizer_class([shadow], lr=1.0, **self.kwargs)
        probe.state[shadow] = state  # the probe initializes and updates our dict in place
        probe.step()
        return shadow.neg_().add_(param.detach())


BUILTIN_PRECONDITIONERS: dict[str, type[Preconditioner]] = {
    cls.name: cls for cls in (SGDPreconditioner, AdagradPreconditioner, AdagradEMAPreconditioner,
                              AdamPreconditioner, RMSpropPreconditioner, SadamPreconditioner)
}


def inner_setting(inner, inner_kwargs: dict | None = None) -> tuple:
    """Funnel's `inner` and `inner_kwargs` as a param group keeps them: a built-in Preconditioner object becomes
    its name and fields, a torch.optim class its import path "module:Name", so that a checkpoint holds only
    strings and numbers (torch.load(weights_only=True)). Anything else is kept as given."""
    kwargs = dict(inner_kwargs or {})
    if type(inner) in BUILTIN_PRECONDITIONERS.values() and not kwargs:
        return inner.name, {f.name: getattr(inner, f.name) for f in fields(inner)}
    if isinstance(inner, type) and issubclass(inner, torch.optim.Optimizer):
        return f"{inner.__module__}:{inner.__qualname__}", kwargs
    return inner, kwargs


def _torch_optimizer_class(path: str) -> type[torch.optim.Optimizer] | None:
    """The torch.optim.Optimizer subclass at import path "module:Name", or None if `path` names none."""
    module, _, name = path.partition(":")
    try:
        found = getattr(importlib.import_module(module), name) if name else None
    except (ImportError, AttributeError):
        return None
    return found if isinstance(found, type) and issubclass(found, torch.optim.Optimizer) else None


def make_preconditioner(inner, inner_kwargs: dict | None = None) -> Preconditioner:
    """Resolve Funnel's `inner` argument: a built-in name, a Preconditioner, or a torch.optim.Optimizer class (or
    its import path "module:Name")."""
    kwargs = dict(inner_kwargs or {})
    if isinstance(inner, Preconditioner):
        if kwargs:
            raise ValueError("inner_kwargs is only for a named inner optimizer or a torch.optim class; "
                             "configure a Preconditioner object when constructing it")
        return inner
    if isinstance(inner, str) and ":" in inner and _torch_optimizer_class(inner) is not None:
        inner = _torch_optimizer_class(inner)
    if isinstance(inner, type) and issubclass(inner, torch.optim.Optimizer):
        return TorchOptimizerPreconditioner(inner, **kwargs)
    if isinstance(inner, str) and inner in BUILTIN_PRECONDITIONERS:
        cls = BUILTIN_PRECONDITIONERS[inner]
        valid = [f.name for f in fields(cls)]
        unknown = sorted(set(kwargs) - set(valid))
        if unknown:
            raise ValueError(f"Invalid inner_kwargs for inner={inner!r}: {unknown} "
                             f"(valid: {valid if valid else 'none'})")
        if "betas" in kwargs:
            kwargs["betas"] = tuple(kwargs["betas"])
        return cls(**kwargs)
    raise ValueError(f"Invalid inner: {inner!r} (valid: {', '.join(map(repr, BUILTIN_PRECONDITIONERS))}, "
                     "a funnel.optim.Preconditioner, or a torch.optim.Optimizer class or its path 'module:Name')")
