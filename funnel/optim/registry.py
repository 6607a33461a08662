"""Every optimizer name the project knows: class, one-line description and registry defaults.

Configs, tests and docs enumerate `REGISTRY`; `build_optimizer(params, name, **overrides)` constructs one. The peers
that a user would pick instead of Funnel (Schedule-Free, Prodigy, D-Adaptation, DoG) come from optional packages:
they are registered by import path and imported only when built (`pip install -e '.[peers]'`).
"""
from __future__ import annotations

import importlib
import inspect
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
    cls: type[torch.optim.Optimizer] | str  # a class, or "module:Class" in an optional package
    description: str
    defaults: Mapping[str, Any] = field(default_factory=dict)
    package: str | None = None  # the pip package that provides a class given by import path
    cannot_resume: str | None = None  # why its state does not survive a checkpoint (the runner refuses to resume)

    def resolve(self) -> type[torch.optim.Optimizer]:
        """The optimizer class, importing an optional package on first use."""
        if not isinstance(self.cls, str):
            return self.cls
        module, _, attribute = self.cls.partition(":")
        try:
            return getattr(importlib.import_module(module), attribute)
        except ImportError as err:
            raise ImportError(f"optimizer {self.name!r} needs the package {self.package!r}: "
                              f"pip install -e '.[peers]' (or pip install {self.package})") from err

    def signature(self) -> inspect.Signature:
        """The constructor's signature: the class's __init__, or a constructor function's own (wrapped peers)."""
        made_by = self.resolve()
        return inspect.signature(made_by if inspect.isfunction(made_by) else made_by.__init__)

    def build(self, params, **overrides) -> torch.optim.Optimizer:
        return self.resolve()(params, **{**self.defaults, **overrides})


def _specs(*specs: OptimizerSpec) -> Mapping[str, OptimizerSpec]:
    return MappingProxyType({s.name: OptimizerSpec(s.name, s.cls, s.description, MappingProxyType(dict(s.defaults)),
                                                   s.package, s.cannot_resume) for s in specs})


PEER = "peer: "  # descriptions of the optional peers start with this
# Measured with mechanic-pytorch 0.0.1 and momo-opt 0.1.0 (tests/train/test_peers.py checks that this still holds).
MECHANIC_STATE = ("mechanic-pytorch keeps its state keyed by the parameter tensors of the process that made it: "
                  "load_state_dict into a new optimizer raises KeyError")
MOMO_STATE = ("momo-opt keeps its step count outside state_dict: a resumed run takes different steps than an "
              "uninterrupted one")


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
    # Peers, with their packages' documented defaults (arguments not given here keep them).
    OptimizerSpec("sf_sgd", "schedulefree:SGDScheduleFree", PEER + "Schedule-Free SGD (Defazio et al.)",
                  package="schedulefree"),
    OptimizerSpec("sf_adamw", "schedulefree:AdamWScheduleFree", PEER + "Schedule-Free AdamW (Defazio et al.)",
                  package="schedulefree"),
    OptimizerSpec("prodigy", "prodigyopt:Prodigy", PEER + "Prodigy (Mishchenko & Defazio)", package="prodigyopt"),
    OptimizerSpec("dadapt_sgd", "dadaptation:DAdaptSGD", PEER + "D-Adaptation SGD (Defazio & Mishchenko)",
                  package="dadaptation"),
    OptimizerSpec("dadapt_adam", "dadaptation:DAdaptAdam", PEER + "D-Adaptation Adam (Defazio & Mishchenko)",
                  package="dadaptation"),
    OptimizerSpec("dog", "dog:DoG", PEER + "DoG, distance over gradients (Ivgi et al.)", package="dog-optimizer"),
    OptimizerSpec("ldog", "dog:LDoG", PEER + "LDoG, layer-wise DoG (Ivgi et al.)", package="dog-optimizer"),
    OptimizerSpec("mechanic_sgd", "funnel.optim.peers.mechanic:mechanic_sgd",
                  PEER + "Mechanic over SGD with momentum (Cutkosky et al.)", package="mechanic-pytorch",
                  cannot_resume=MECHANIC_STATE),
    OptimizerSpec("mechanic_adagrad", "funnel.optim.peers.mechanic:mechanic_adagrad", PEER + "Mechanic over AdaGrad",
                  package="mechanic-pytorch", cannot_resume=MECHANIC_STATE),
    OptimizerSpec("mechanic_adam", "funnel.optim.peers.mechanic:mechanic_adam", PEER + "Mechanic over Adam",
                  package="mechanic-pytorch", cannot_resume=MECHANIC_STATE),
    OptimizerSpec("sf_wrap_sgd", "funnel.optim.peers.schedulefree_wrap:sf_wrap_sgd",
                  PEER + "ScheduleFreeWrapper over SGD (Defazio et al.)", package="schedulefree"),
    OptimizerSpec("sf_wrap_adagrad", "funnel.optim.peers.schedulefree_wrap:sf_wrap_adagrad",
                  PEER + "ScheduleFreeWrapper over AdaGrad", package="schedulefree"),
    OptimizerSpec("momo", "momo:Momo", PEER + "MoMo: momentum with a Polyak-type step (Schaipp et al.)",
                  package="momo-opt", cannot_resume=MOMO_STATE),
    OptimizerSpec("momo_adam", "momo:MomoAdam", PEER + "MoMo-Adam (Schaipp et al.)", package="momo-opt",
                  cannot_resume=MOMO_STATE),
)


def takes_loss(optimizer) -> bool:
    """MoMo-type optimizers set their step size from the loss value: their step() takes it as `loss`."""
    try:
        return "loss" in inspect.signature(optimizer.step).parameters
    except (TypeError, ValueError):
        return False


def get_optimizer_spec(name: str) -> OptimizerSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"Unknown optimizer {name!r}; valid names: {', '.join(REGISTRY)}") from None


def build_optimizer(params, name: str, **overrides) -> torch.optim.Optimizer:
    """`REGISTRY[name]` built over `params`, its defaults updated by `overrides`. Parameters first, as for any
    torch optimizer: it is also the target of the configs of the optional peers (Hydra's partial completes it with
    the parameters), so that a missing package gets the message that names it."""
    return get_optimizer_spec(name).build(params, **overrides)
