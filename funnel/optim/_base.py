"""What every optimizer of this package shares: lazy state, the state-dtype policy, gradient preparation,
hyperparameter checks and the per-tensor / foreach switch."""
from __future__ import annotations

import functools
import math
import types
from collections import defaultdict
from collections.abc import Iterable

import torch
from torch import Tensor
from torch.optim import Optimizer

# exp() arguments are clipped to this bound (float32's exp overflows near 88.7). With it a multiplicative update
# can never produce inf, and hence never 0 * inf = nan; no sane gamma comes near it. Not part of any paper.
MAX_EXPONENT = 80.0

# Added to each norm of a cosine-normalized update (Funnel eq. 12, multiplicative HD) so that a zero
# previous direction gives a zero exponent instead of 0 / 0.
NORM_EPS = 1e-10


def state_dtype(param: Tensor) -> torch.dtype:
    """The dtype of an optimizer's floating state: the parameter's own for fp32/fp64, fp32 for bf16/fp16."""
    return param.dtype if param.dtype in (torch.float32, torch.float64) else torch.float32


def restore_state(saved: dict, loaded: dict, param: Tensor) -> dict:
    """The state of `param` after `load_state_dict`: floating tensors copied from the checkpoint's own `saved`
    values in `state_dtype(param)` on the parameter's device; everything else as torch loaded it (`loaded`).

    torch's `load_state_dict` casts floating state to the parameter dtype, which for bf16/fp16 parameters would
    round our fp32 state to half precision before anything could undo it. Keys named "step" are torch's business.
    """
    out = {}
    for key, value in saved.items():
        if isinstance(value, dict):
            out[key] = restore_state(value, loaded[key], param)
        elif isinstance(value, Tensor) and value.is_floating_point() and key != "step":
            out[key] = value.to(device=param.device, dtype=state_dtype(param), copy=True)
        else:
            out[key] = loaded[key]
    return out


def prepare_grad(param: Tensor, grad: Tensor, weight_decay: float, maximize: bool) -> Tensor:
    """The raw gradient g of docs/algorithms.md, section 1: in the state dtype, negated to maximize, plus coupled L2
    weight decay."""
    grad = grad.to(state_dtype(param))
    if maximize:
        grad = -grad
    return grad.add(param, alpha=weight_decay) if weight_decay != 0 else grad


def prepare_grads(params: list[Tensor], grads: list[Tensor], weight_decay: float, maximize: bool,
                  foreach: bool) -> list[Tensor]:
    """`prepare_grad` over lists, with foreach kernels (grouped by device and dtype) when `foreach`."""
    if not foreach:
        return [prepare_grad(p, g, weight_decay, maximize) for p, g in zip(params, grads)]
    out = list(grads)
    for idx in bucket_by_device_and_dtype(params):
        bucket = [grads[i].to(state_dtype(params[i])) for i in idx]
        if maximize:
            bucket = torch._foreach_neg(bucket)
        if weight_decay != 0:
            bucket = torch._foreach_add(bucket, [params[i] for i in idx], alpha=weight_decay)
        for i, g in zip(idx, bucket):
            out[i] = g
    return out


def dot(a: Tensor, b: Tensor) -> Tensor:
    """<a, b> over all elements, as a 0-d tensor (no host sync)."""
    return torch.dot(a.reshape(-1), b.reshape(-1))


def clipped_exp(x: Tensor) -> Tensor:
    """exp(x) with x clipped to +-MAX_EXPONENT, in place on x."""
    return x.clamp_(-MAX_EXPONENT, MAX_EXPONENT).exp_()


def bucket_by_device_and_dtype(params: list[Tensor]) -> list[list[int]]:
    """Indices of `params` grouped so that foreach kernels see one device and one dtype at a time."""
    buckets: dict[tuple, list[int]] = defaultdict(list)
    for i, p in enumerate(params):
        buckets[(p.device, p.dtype)].append(i)
    return list(buckets.values())


def default_foreach(params: Iterable[Tensor]) -> bool:
    """Like torch.optim: the foreach path by default only when every tensor is on a CUDA device."""
    return all(p.device.type == "cuda" for p in params)


# ----------------------------------------------------------------------------------------------- fused paths
@functools.lru_cache(maxsize=64)
def compiled(update, settings, layout: tuple):
    """torch.compile of `update(*tensors, settings=...)` for one frozen settings record and one tensor layout (see
    `layout`): the fused paths call it once per step for a whole bucket of tensors, so that the cost of a step does not
    grow with the number of tensors (a compiled call per tensor cost ~0.25 ms on a CPU, more than updating a small
    tensor), and inductor makes one reduction pass and one elementwise pass per tensor.

    Shapes are static: the first step of a new layout compiles (minutes for a ResNet-50 on two CPU cores); inductor's
    on-disk cache makes the next process with the same model cheap. Each (settings, layout) gets its own copy of
    the function, with the record as its keyword default, so that nothing recompiles behind the user's back and
    torch.compile's 8-entry cache per code object is never exhausted by a sweep in one process."""
    code = update.__code__.replace(co_name=f"{update.__name__}_{compiled.cache_info().currsize}")
    copy = types.FunctionType(code, update.__globals__, code.co_name)
    copy.__kwdefaults__ = {"settings": settings}
    return torch.compile(copy, dynamic=False, fullgraph=True)


def layout(tensors: list[Tensor]) -> tuple:
    """What a compiled graph is specialized on: each tensor's shape, strides, dtype and device."""
    return tuple((tuple(t.shape), t.stride(), t.dtype, t.device) for t in tensors)


def step_tensor(counts: list[int], like: Tensor) -> Tensor:
    """The tensors' step counts as one tensor (so that a new step never recompiles): a fill when they are equal,
    which needs no copy from the host."""
    if all(c == counts[0] for c in counts):
        return torch.full((len(counts),), float(counts[0]), dtype=like.dtype, device=like.device)
    return torch.tensor([float(c) for c in counts], dtype=like.dtype, device=like.device)


def scalar_tensor(value, like: Tensor) -> Tensor:
    """`value` (a number or a 0-d tensor) as a 0-d tensor of `like`'s dtype and device."""
    if isinstance(value, Tensor):
        return value.to(device=like.device, dtype=like.dtype)
    return torch.full((), value, dtype=like.dtype, device=like.device)


# ----------------------------------------------------------------------------------------------- validation
def check_nonnegative(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and value >= 0 and math.isfinite(value)):
        raise ValueError(f"Invalid {name}: {value!r} (must be a finite number >= 0)")


def check_unit_interval(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and 0 <= value < 1):
        raise ValueError(f"Invalid {name}: {value!r} (must be in [0, 1))")


def check_betas(name: str, betas) -> None:
    if not (isinstance(betas, (tuple, list)) and len(betas) == 2):
        raise ValueError(f"Invalid {name}: {betas!r} (must be a pair (beta1, beta2), each in [0, 1))")
    for i, b in enumerate(betas):
        check_unit_interval(f"{name}[{i}]", b)


def check_range(name: str, value) -> None:
    ok = isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(v, (int, float)) for v in value)
    if not ok or not (0 <= value[0] < value[1]) or math.isnan(value[1]):
        raise ValueError(f"Invalid {name}: {value!r} (must be a pair (low, high) with 0 <= low < high)")


def check_choice(name: str, value, choices: Iterable) -> None:
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"Invalid {name}: {value!r} (valid: {', '.join(map(repr, choices))})")


# ----------------------------------------------------------------------------------------------- the base class
class StatefulOptimizer(Optimizer):
    """A torch Optimizer whose per-parameter state is created lazily by `_init_state` and follows `state_dtype`.

    Subclasses implement `_check_group(group)` (raise ValueError on a bad hyperparameter), `_init_state(group,
    param, state)` and `_step_group(group, params, grads, states)`, which `step` calls for every group with at
    least one gradient.
    """

    def add_param_group(self, param_group: dict) -> None:
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        for p in group["params"]:
            if p.is_complex():
                raise ValueError(f"{type(self).__name__} does not support complex parameters; "
                                 "pass torch.view_as_real(param) instead")
        self._check_group(group)

    def _check_group(self, group: dict) -> None:
        raise NotImplementedError

    def _init_state(self, group: dict, param: Tensor, state: dict) -> None:
        raise NotImplementedError

    def _step_group(self, group: dict, params: list[Tensor], grads: list[Tensor], states: list[dict]) -> None:
        raise NotImplementedError

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params, grads, states = self._params_with_grad(group)
            if params:
                self._step_group(group, params, grads, states)
        return loss

    def _params_with_grad(self, group: dict) -> tuple[list[Tensor], list[Tensor], list[dict]]:
        """The group's parameters that have a gradient, their gradients and their (initialized) states."""
        params, grads, states = [], [], []
        for p in group["params"]:
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise RuntimeError(f"{type(self).__name__} does not support sparse gradients")
            state = self.state[p]
            if not state:
                self._init_state(group, p, state)
            params.append(p)
            grads.append(p.grad)
            states.append(state)
        return params, grads, states

    def _use_foreach(self, group: dict, params: list[Tensor]) -> bool:
        foreach = group.get("foreach")
        return default_foreach(params) if foreach is None else bool(foreach)

    def __setstate__(self, state: dict) -> None:
        """After unpickling or `load_state_dict`: a group saved before a setting existed gets its default, as
        torch.optim's own optimizers do."""
        super().__setstate__(state)
        for group in self.param_groups:
            for key, value in self.defaults.items():
                if key != "differentiable":  # torch's own __setstate__ adds it to the defaults, not to groups
                    group.setdefault(key, value)

    def _built(self, key, build):
        """`build()`, made once per distinct `key` (a hashable description of what it builds) and reused: the
        objects built from a group's settings (an inner optimizer, Funnel's settings record) are immutable, so the
        same settings may share them. An unhashable key builds anew each time."""
        try:
            cache = self.__dict__.setdefault("_built_cache", {})
            if key not in cache:
                cache[key] = build()
            return cache[key]
        except TypeError:  # unhashable
            return build()

    def load_state_dict(self, state_dict: dict) -> None:
        self._check_loadable(state_dict)
        saved_ids = [i for group in state_dict["param_groups"] for i in group["params"]]
        saved_state = state_dict["state"]
        super().load_state_dict(state_dict)
        params = [p for group in self.param_groups for p in group["params"]]
        for saved_id, p in zip(saved_ids, params):
            if saved_id in saved_state:
                self.state[p] = restore_state(saved_state[saved_id], self.state[p], p)

    def _check_loadable(self, state_dict: dict) -> None:
        """Refuse, naming the mismatch, a state_dict of another optimizer or of other parameters, which torch would
        accept and which would then fail (or silently differ) at the next step: each saved state must have the keys
        this optimizer keeps under the saved group's settings, and tensors of its parameter's shape (or 0-d)."""
        name = type(self).__name__
        groups = state_dict.get("param_groups", [])
        if len(groups) != len(self.param_groups):
            raise ValueError(f"{name}.load_state_dict: the state_dict has {len(groups)} param groups, this optimizer "
                             f"{len(self.param_groups)}")
        for gi, (saved, group) in enumerate(zip(groups, self.param_groups)):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(f"{name}.load_state_dict: group {gi} has {len(saved['params'])} parameters in the "
                                 f"state_dict, {len(group['params'])} here")
            settings = {**self.defaults, **{k: v for k, v in saved.items() if k != "params"}, "params": []}
            self._check_saved_settings(settings, group, f"{name}.load_state_dict: group {gi}")
            for index, param in zip(saved["params"], group["params"]):
                if index in state_dict["state"]:
                    self._check_saved_state(state_dict["state"][index], param, settings, f"parameter {index}")

    def _check_saved_settings(self, settings: dict, group: dict, where: str) -> None:
        """Refuse a saved group (its settings over the defaults) whose settings this optimizer must not take from a
        file; `group` is the group it replaces. Checked before anything of the state_dict is used."""

    def _check_saved_state(self, saved: dict, param: Tensor, settings: dict, where: str) -> None:
        expected: dict = {}
        self._init_state(settings, torch.empty_like(param, device="meta"), expected)
        _compare_state(saved, expected, tuple(param.shape), f"{type(self).__name__}.load_state_dict: {where}")


def _compare_state(saved: dict, expected: dict, shape: tuple, where: str) -> None:
    """Keys as `expected` (unless it is empty: a probed torch optimizer makes its state lazily), shapes as `shape`."""
    if expected and set(saved) != set(expected):
        raise ValueError(f"{where} has state {sorted(saved)}, but this optimizer keeps {sorted(expected)} under the "
                         "saved settings: the state_dict is from another optimizer")
    for key, value in saved.items():
        if isinstance(value, dict):
            _compare_state(value, expected.get(key, {}), shape, f"{where}, {key}")
        elif isinstance(value, Tensor) and value.dim() > 0 and tuple(value.shape) != shape:
            raise ValueError(f"{where}, {key} has shape {tuple(value.shape)}, the parameter {shape}: the state_dict "
                             "is from other parameters (another model)")
