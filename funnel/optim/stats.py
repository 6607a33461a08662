"""Read an optimizer's adaptive state as loggable numbers, without a host sync per tensor.

The optimizers never log; a training loop calls `optimizer_stats` on the steps it logs.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

import torch
from torch import Tensor
from torch.optim import Optimizer

DEFAULT_QUANTILES = (0.1, 0.5, 0.9)


def optimizer_stats(optimizer: Optimizer, named_parameters: Iterable[tuple[str, Tensor]] | None = None, *,
                    quantiles: Iterable[float] = DEFAULT_QUANTILES, max_samples: int = 1 << 20) -> dict[str, float]:
    """Flat {key: float} summary of `optimizer`'s step-size state.

    Keys: ``lr/group<i>`` (every optimizer; the adapted rate for SGDHD/AdamHD), ``d/group<i>`` (the distance
    estimate of Prodigy and D-Adaptation), and for parameters with state
    ``scale/<name>`` (Funnel's per-tensor scale) and ``gain/<name>/{mean,min,max,p10,p50,p90}`` (its gains).
    `named_parameters` (e.g. ``model.named_parameters()``) gives the names; without it a parameter is
    ``group<i>.param<j>``. Quantiles of a tensor larger than `max_samples` are taken on an evenly strided subsample.
    All values are gathered with one device-to-host copy per device.
    """
    quantiles = tuple(quantiles)
    names = {id(p): n for n, p in named_parameters} if named_parameters is not None else {}
    keys: list[str] = []
    values: list[Tensor | float] = []
    for gi, group in enumerate(optimizer.param_groups):
        keys.append(f"lr/group{gi}")
        values.append(group["lr"])
        if isinstance(group.get("d"), (float, int, Tensor)):
            keys.append(f"d/group{gi}")
            values.append(group["d"])
        for pi, p in enumerate(group["params"]):
            state = optimizer.state.get(p)
            if not state:
                continue
            name = names.get(id(p), f"group{gi}.param{pi}")
            if isinstance(state.get("scale"), Tensor):
                keys.append(f"scale/{name}")
                values.append(state["scale"])
            if isinstance(state.get("gain"), Tensor):
                gain = state["gain"].detach().reshape(-1)
                sample = gain[:: -(-gain.numel() // max_samples)] if gain.numel() > max_samples else gain
                stats = [gain.mean(), gain.min(), gain.max()]
                if quantiles:
                    stats += list(torch.quantile(sample.float(), torch.tensor(quantiles, device=gain.device)))
                keys += [f"gain/{name}/{k}" for k in ("mean", "min", "max")]
                keys += [f"gain/{name}/p{round(q * 100):02d}" for q in quantiles]
                values += stats
    return dict(zip(keys, _to_floats(values)))


def _to_floats(values: list[Tensor | float]) -> list[float]:
    """Python floats of a mix of numbers and 0-d tensors, with one host copy per device."""
    out: list[float | None] = [None] * len(values)
    per_device: dict[torch.device, list[int]] = defaultdict(list)
    for i, v in enumerate(values):
        if isinstance(v, Tensor):
            per_device[v.device].append(i)
        else:
            out[i] = float(v)
    for idx in per_device.values():
        stacked = torch.stack([values[i].detach().reshape(()).to(torch.float64) for i in idx])
        for i, v in zip(idx, stacked.tolist()):
            out[i] = v
    return out
