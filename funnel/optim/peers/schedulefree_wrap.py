"""Schedule-Free's ScheduleFreeWrapper (Defazio et al.) over a base optimizer: the wrapper's momentum and iterate
averaging replace a schedule, as Funnel's scale does. Constructors with the registry's signature."""
from __future__ import annotations

import torch
from schedulefree import ScheduleFreeWrapper


def sf_wrap_sgd(params, lr: float = 0.1, momentum: float = 0.9, weight_decay_at_y: float = 0.0,
                weight_lr_power: float = 2.0, r: float = 0.0):
    """ScheduleFreeWrapper(torch.optim.SGD(lr), momentum): plain SGD as the base, as the wrapper's docs suggest
    (the wrapper supplies the momentum)."""
    return ScheduleFreeWrapper(torch.optim.SGD(params, lr=lr), momentum=momentum,
                               weight_decay_at_y=weight_decay_at_y, weight_lr_power=weight_lr_power, r=r)


def sf_wrap_adagrad(params, lr: float = 0.1, momentum: float = 0.9, eps: float = 1e-10,
                    initial_accumulator_value: float = 0.0, weight_lr_power: float = 2.0, r: float = 0.0):
    """ScheduleFreeWrapper(torch.optim.Adagrad): the wrapper over the same base as Funnel(AdaGrad)."""
    return ScheduleFreeWrapper(torch.optim.Adagrad(params, lr=lr, eps=eps,
                                                   initial_accumulator_value=initial_accumulator_value),
                               momentum=momentum, weight_lr_power=weight_lr_power, r=r)
