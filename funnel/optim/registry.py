"""Every optimizer name the project knows: class, one-line description and registry defaults.

Configs, tests and docs enumerate `REGISTRY`; `build_optimizer(name, params, **overrides)` constructs one.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import torch

from .funnel import Funnel
from .hypergradient import AdamHD, SGDHD
from .preconditioned import AdagradEMA, SAMSGrad, Sadam


@dataclass(frozen=True)
class OptimizerSpec:
    name: str
    cls: type[torch.optim.Optimizer]
    description: str
    defaults: Mapping[str, Any] = field(default_factory=dict)

    def build(self, params, **overrides) -> torch.optim.Optimizer:
        return self.cls(params, **{**self.defaults, **overrides})


def _specs(*specs: OptimizerSpec) -> Mapping[str, OptimizerSpec]:
    return MappingProxyType({s.name: OptimizerSpec(s.name, s.cls, s.description, MappingProxyType(dict(s.defaults)))
                             for s in specs})


REGISTRY: Mapping[str, OptimizerSpec] = _specs(
    OptimizerSpec("sgd", torch.optim.SGD, "SGD (torch.optim)", {"lr": 0.1}),
    OptimizerSpec("momentum", torch.optim.SGD, "SGD with heavy-ball momentum (torch.optim)",
                  {"lr": 0.1, "momentum": 0.9}),
    OptimizerSpec("adagrad", torch.optim.Adagrad, "AdaGrad (torch.optim)",
                  {"lr": 0.1, "eps": 1e-10, "initial_accumulator_value": 0.0}),
    OptimizerSpec("adagrad_ema", AdagradEMA, "AdaGrad with an EMA of the pre-conditioned gradient (Funnel paper)",
                  {"lr": 1e-3, "beta": 0.9}),
    OptimizerSpec("adam", torch.optim.Adam, "Adam (torch.optim)", {"lr": 1e-3}),
    OptimizerSpec("rmsprop", torch.optim.RMSprop, "RMSProp (torch.optim)", {"lr": 1e-3}),
    OptimizerSpec("sadam", Sadam, "Sadam: Adam with a softplus denominator (Tong et al.)", {"lr": 1e-2}),
    OptimizerSpec("samsgrad", SAMSGrad, "SAMSGrad: Sadam with AMSGrad's max (Tong et al.)", {"lr": 1e-2}),
    OptimizerSpec("sgd_hd", SGDHD, "SGD with hypergradient-descent rate (Baydin et al.)",
                  {"lr": 1e-3, "hypergrad_lr": 1e-3}),
    OptimizerSpec("sgdn_hd", SGDHD, "SGD Nesterov momentum with hypergradient-descent rate (Baydin et al.)",
                  {"lr": 1e-3, "momentum": 0.9, "nesterov": True, "hypergrad_lr": 1e-3}),
    OptimizerSpec("adam_hd", AdamHD, "Adam with hypergradient-descent rate (Baydin et al.)",
                  {"lr": 1e-3, "hypergrad_lr": 1e-7}),
    OptimizerSpec("funnel_sgd", Funnel, "Funnel over SGD, no momentum", {"lr": 0.1, "inner": "sgd"}),
    OptimizerSpec("funnel_momentum", Funnel, "Funneled momentum: Funnel over SGD with momentum (paper Table 1)",
                  {"lr": 0.1, "momentum": 0.9, "inner": "sgd", "gamma_p": 1e-4, "gamma_s": 1e-3}),
    OptimizerSpec("funnel_adagrad", Funnel, "Funnel over AdaGrad (paper Figure 3)",
                  {"lr": 0.1, "inner": "adagrad"}),
    OptimizerSpec("funnel_adagrad_ema", Funnel, "Funnel over AdaGrad-EMA", {"lr": 1e-3, "inner": "adagrad_ema"}),
    OptimizerSpec("funnel_adam", Funnel, "Funnel over Adam", {"lr": 1e-3, "inner": "adam"}),
    OptimizerSpec("funnel_rmsprop", Funnel, "Funnel over RMSProp", {"lr": 1e-3, "inner": "rmsprop"}),
    OptimizerSpec("funnel_sadam", Funnel, "Funnel over Sadam", {"lr": 1e-2, "inner": "sadam"}),
)


def get_optimizer_spec(name: str) -> OptimizerSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"Unknown optimizer {name!r}; valid names: {', '.join(REGISTRY)}") from None


def build_optimizer(name: str, params, **overrides) -> torch.optim.Optimizer:
    """`REGISTRY[name]` built over `params`, its defaults updated by `overrides`."""
    return get_optimizer_spec(name).build(params, **overrides)
