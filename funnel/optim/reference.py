"""Slow, paper-literal references in float64, written from docs/algorithms.md (sections 2 to 5) alone.

They share no code with the production optimizers and favour literal transcription over speed: every formula
appears as docs/algorithms.md writes it, one tensor at a time, with Python loops and no in-place tricks. Tests feed the
same gradients to a reference and to a production optimizer and compare every parameter and state tensor.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor


def _f64(x: Tensor) -> Tensor:
    return x.detach().to(torch.float64).clone()


class InnerReference:
    """docs/algorithms.md, section 3: the direction gt of each inner optimizer, computed literally."""

    DEFAULTS = {
        "sgd": {},
        "adagrad": {"eps": 1e-10, "initial_accumulator_value": 0.0},
        "adagrad_ema": {"beta": 0.9, "eps": 1e-10, "initial_accumulator_value": 0.0},
        "adam": {"betas": (0.9, 0.999), "eps": 1e-8},
        "rmsprop": {"alpha": 0.99, "eps": 1e-8},
        "sadam": {"betas": (0.9, 0.999), "softplus_beta": 50.0, "amsgrad": False},
    }

    def __init__(self, name: str, **kwargs):
        self.name = name
        self.h = {**self.DEFAULTS[name], **kwargs}

    def init(self, w: Tensor) -> dict:
        z = torch.zeros_like(w)
        if self.name in ("adagrad", "adagrad_ema"):
            return {"G": torch.full_like(w, self.h["initial_accumulator_value"]), "e": z.clone()}
        if self.name in ("adam", "sadam"):
            return {"m": z.clone(), "v": z.clone(), "vmax": z.clone()}
        if self.name == "rmsprop":
            return {"v": z.clone()}
        return {}

    def direction(self, g: Tensor, s: dict, t: int) -> Tensor:
        """gt for the t-th step (t >= 1); updates the state dict s."""
        h = self.h
        if self.name == "sgd":
            return g
        if self.name == "adagrad":
            s["G"] = s["G"] + g * g
            return g / (torch.sqrt(s["G"]) + h["eps"])
        if self.name == "adagrad_ema":
            s["G"] = s["G"] + g * g
            s["e"] = h["beta"] * s["e"] + (1 - h["beta"]) * g / (torch.sqrt(s["G"]) + h["eps"])
            return s["e"]
        if self.name == "rmsprop":
            s["v"] = h["alpha"] * s["v"] + (1 - h["alpha"]) * g * g
            return g / (torch.sqrt(s["v"]) + h["eps"])
        b1, b2 = h["betas"]
        s["m"] = b1 * s["m"] + (1 - b1) * g
        s["v"] = b2 * s["v"] + (1 - b2) * g * g
        if self.name == "adam":
            m_hat = s["m"] / (1 - b1**t)
            v_hat = s["v"] / (1 - b2**t)
            return m_hat / (torch.sqrt(v_hat) + h["eps"])
        # sadam: softplus_beta(x) = log(1 + exp(beta x)) / beta, on the raw (or max) v, no eps
        s["vmax"] = torch.maximum(s["vmax"], s["v"])
        v = s["vmax"] if h["amsgrad"] else s["v"]
        beta = h["softplus_beta"]
        denom = torch.logaddexp(torch.zeros_like(v), beta * torch.sqrt(v)) / beta
        return math.sqrt(1 - b2**t) / (1 - b1**t) * s["m"] / denom


def _clip(x: Tensor, bounds) -> Tensor:
    return torch.clamp(x, bounds[0], bounds[1])


def _norm(x: Tensor) -> Tensor:
    return torch.sqrt(torch.sum(x * x))


class FunnelReference:
    """docs/algorithms.md, section 2, literally. `groups`: list of dicts with "params" (tensors, copied to float64)
    and any of the hyperparameters below; `step(grads)` takes one list per group with a tensor or None per parameter."""

    DEFAULTS = dict(lr=0.1, momentum=0.0, nesterov=False, weight_decay=0.0, inner="sgd", inner_kwargs=None,
                    gamma_p=1e-4, gamma_s=1e-3, beta=0.9, normalize_gains=True, normalize_scale=True,
                    gain_range=(0.0, 1e3), scale_range=(0.0, 1e3), scale_granularity="tensor", egu="exact",
                    maximize=False)

    def __init__(self, groups: list[dict], **defaults):
        self.groups = []
        for group in groups:
            hyper = {**self.DEFAULTS, **defaults, **{k: v for k, v in group.items() if k != "params"}}
            hyper["params"] = [_f64(w) for w in group["params"]]
            hyper["inner_ref"] = InnerReference(hyper["inner"], **(hyper["inner_kwargs"] or {}))
            self.groups.append(hyper)
        self.state: dict[tuple[int, int], dict] = {}
        self.group_scale = [torch.tensor(1.0, dtype=torch.float64) for _ in self.groups]

    def scale(self, gi: int, pi: int) -> Tensor:
        """The scale that applies to parameter pi of group gi."""
        if self.groups[gi]["scale_granularity"] == "global":
            return self.group_scale[gi]
        return self.state[(gi, pi)]["s"]

    def step(self, grads: list[list[Tensor | None]]) -> None:
        for gi, (group, group_grads) in enumerate(zip(self.groups, grads)):
            self._step_group(gi, group, group_grads)

    def _step_group(self, gi, h, group_grads):
        items = []
        for pi, (w, grad) in enumerate(zip(h["params"], group_grads)):
            if grad is None:
                continue  # no gradient: skipped, state untouched
            key = (gi, pi)
            if key not in self.state:
                z = torch.zeros_like(w)
                self.state[key] = {"t": 0, "p": torch.ones_like(w), "s": torch.tensor(1.0, dtype=torch.float64),
                                   "m": z.clone(), "nu": z.clone(), "d": z.clone(),
                                   "inner": h["inner_ref"].init(w)}
            g = _f64(grad)
            if h["maximize"]:
                g = -g
            g = g + h["weight_decay"] * w
            items.append((pi, key, w, g))

        def scale_exponent(s, dot, g_norm, d_norm):
            x = dot / ((g_norm + 1e-10) * (d_norm + 1e-10)) if h["normalize_scale"] else dot
            return h["gamma_s"] * (s * x if h["egu"] == "log" else x)

        if h["scale_granularity"] == "global" and items:
            # step 3 over the whole group, with the old directions d of all its tensors
            dot = sum(torch.sum(g * self.state[key]["d"]) for _, key, _, g in items)
            g_norm = torch.sqrt(sum(torch.sum(g * g) for _, _, _, g in items))
            d_norm = torch.sqrt(sum(torch.sum(self.state[key]["d"] ** 2) for _, key, _, _ in items))
            s = self.group_scale[gi]
            self.group_scale[gi] = _clip(s * torch.exp(scale_exponent(s, dot, g_norm, d_norm)), h["scale_range"])

        for pi, key, w, g in items:
            st = self.state[key]
            t = st["t"]
            # 1. inner direction
            gt = h["inner_ref"].direction(g, st["inner"], t + 1)
            # 2. gains, from the old ema and the raw gradient
            p = st["p"]
            if h["normalize_gains"]:
                x = torch.sign(g) * torch.sign(st["m"])
            else:
                m_hat = st["m"] / (1 - h["beta"] ** t) if t >= 1 else torch.zeros_like(w)
                x = g * m_hat
            if h["egu"] == "log":
                x = p * x
            st["p"] = _clip(p * torch.exp(h["gamma_p"] * x), h["gain_range"])
            # 3. scale, from the old direction (the last displacement was -s * d)
            if h["scale_granularity"] == "tensor":
                s = st["s"]
                e = scale_exponent(s, torch.sum(g * st["d"]), _norm(g), _norm(st["d"]))
                st["s"] = _clip(s * torch.exp(e), h["scale_range"])
            s = self.scale(gi, pi)
            # 4.-6. ema, velocity with the NEW gains, parameter with the NEW scale
            st["m"] = h["beta"] * st["m"] + (1 - h["beta"]) * gt
            st["nu"] = h["momentum"] * st["nu"] + h["lr"] * st["p"] * gt
            if h["nesterov"]:
                st["d"] = h["momentum"] * st["nu"] + h["lr"] * st["p"] * gt
            else:
                st["d"] = st["nu"]
            h["params"][pi] = w - s * st["d"]
            st["t"] = t + 1


class HypergradientReference:
    """docs/algorithms.md, section 5, literally: one rate alpha per group, h summed over the group before any
    parameter moves. `base` is "sgd" (SGD-HD, SGDN-HD with momentum) or "adam" (Adam-HD)."""

    DEFAULTS = dict(lr=1e-3, momentum=0.0, nesterov=False, weight_decay=0.0, hypergrad_lr=1e-3,
                    multiplicative=False, min_lr=None, betas=(0.9, 0.999), eps=1e-8)

    def __init__(self, groups: list[dict], base: str, **defaults):
        self.base = base
        self.groups = []
        for group in groups:
            hyper = {**self.DEFAULTS, **defaults, **{k: v for k, v in group.items() if k != "params"}}
            hyper["params"] = [_f64(w) for w in group["params"]]
            hyper["alpha"] = float(hyper["lr"])
            hyper["inner_ref"] = (InnerReference("adam", betas=hyper["betas"], eps=hyper["eps"])
                                  if base == "adam" else InnerReference("sgd"))
            self.groups.append(hyper)
        self.state: dict[tuple[int, int], dict] = {}

    def step(self, grads: list[list[Tensor | None]]) -> None:
        for gi, (h, group_grads) in enumerate(zip(self.groups, grads)):
            items = []
            for pi, (w, grad) in enumerate(zip(h["params"], group_grads)):
                if grad is None:
                    continue
                key = (gi, pi)
                if key not in self.state:
                    z = torch.zeros_like(w)
                    self.state[key] = {"t": 0, "buf": z.clone(), "d": z.clone(), "inner": h["inner_ref"].init(w)}
                items.append((pi, key, w, _f64(grad) + h["weight_decay"] * w))
            if not items:
                continue
            hyper_grad = sum(float(torch.sum(g * self.state[key]["d"])) for _, key, _, g in items)
            if h["multiplicative"]:
                g_norm = math.sqrt(sum(float(torch.sum(g * g)) for *_, g in items))
                d_norm = math.sqrt(sum(float(torch.sum(self.state[key]["d"] ** 2)) for _, key, _, _ in items))
                h["alpha"] = h["alpha"] * (1 + h["hypergrad_lr"] * hyper_grad / ((g_norm + 1e-10) * (d_norm + 1e-10)))
            else:
                h["alpha"] = h["alpha"] + h["hypergrad_lr"] * hyper_grad
            if h["min_lr"] is not None:
                h["alpha"] = max(h["alpha"], h["min_lr"])
            for pi, key, w, g in items:
                st = self.state[key]
                d = h["inner_ref"].direction(g, st["inner"], st["t"] + 1)
                if h["momentum"] > 0:
                    st["buf"] = h["momentum"] * st["buf"] + d
                    d = d + h["momentum"] * st["buf"] if h["nesterov"] else st["buf"]
                st["d"] = d
                h["params"][pi] = w - h["alpha"] * d
                st["t"] += 1


class DirectionReference:
    """docs/algorithms.md, section 4: w <- w - lr * inner(g + weight_decay * w): AdaGrad-EMA, Sadam, SAMSGrad."""

    def __init__(self, params: list[Tensor], inner: str, lr: float, weight_decay: float = 0.0, **inner_kwargs):
        self.params = [_f64(w) for w in params]
        self.inner = InnerReference(inner, **inner_kwargs)
        self.lr, self.weight_decay = lr, weight_decay
        self.state: dict[int, dict] = {}

    def step(self, grads: list[Tensor | None]) -> None:
        for i, (w, grad) in enumerate(zip(self.params, grads)):
            if grad is None:
                continue
            st = self.state.setdefault(i, {"t": 0, "inner": self.inner.init(w)})
            gt = self.inner.direction(_f64(grad) + self.weight_decay * w, st["inner"], st["t"] + 1)
            self.params[i] = w - self.lr * gt
            st["t"] += 1
