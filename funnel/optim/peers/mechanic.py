"""Mechanic (Cutkosky, Defazio, Mehta 2023; mechanic-pytorch): one learned scale over the updates of any base
optimizer, the design closest to Funnel's scale. Constructors with the registry's signature (params, **settings)."""
from __future__ import annotations

import torch
from mechanic_pytorch import mechanize


def mechanic_sgd(params, lr: float = 0.01, momentum: float = 0.9, weight_decay: float = 0.0,
                 s_decay: float = 0.01, s_init: float = 1e-8):
    """mechanize(torch.optim.SGD): heavy-ball SGD whose updates Mechanic scales."""
    return mechanize(torch.optim.SGD, s_decay=s_decay, s_init=s_init)(params, lr=lr, momentum=momentum,
                                                                        weight_decay=weight_decay)


def mechanic_adam(params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                  weight_decay: float = 0.0, s_decay: float = 0.01, s_init: float = 1e-8):
    """mechanize(torch.optim.Adam)."""
    return mechanize(torch.optim.Adam, s_decay=s_decay, s_init=s_init)(params, lr=lr, betas=betas, eps=eps,
                                                                         weight_decay=weight_decay)


def mechanic_adagrad(params, lr: float = 0.1, eps: float = 1e-10, initial_accumulator_value: float = 0.0,
                     s_decay: float = 0.01, s_init: float = 1e-8):
    """mechanize(torch.optim.Adagrad): the same base as Funnel(AdaGrad)."""
    return mechanize(torch.optim.Adagrad, s_decay=s_decay, s_init=s_init)(
        params, lr=lr, eps=eps, initial_accumulator_value=initial_accumulator_value)
