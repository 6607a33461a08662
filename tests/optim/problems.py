"""Seeded parameters and gradient streams shared by the optimizer tests."""
from __future__ import annotations

import torch
from torch import Tensor

# Group 0: several shapes, one tensor that only has a gradient on some steps; group 1: another shape and one
# tensor that never has a gradient.
GROUP_SHAPES = [[(3, 4), (5,), (2, 3, 2), (4,)], [(6,), (2, 2)]]
SOMETIMES_NO_GRAD = (0, 3)  # (group, param): no gradient on every third step
NEVER_GRAD = (1, 1)


def make_groups(dtype=torch.float64, seed: int = 0) -> list[list[Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    return [[torch.randn(s, generator=gen, dtype=torch.float64).to(dtype).requires_grad_() for s in shapes]
            for shapes in GROUP_SHAPES]


def gradient_stream(groups: list[list[Tensor]], steps: int, seed: int = 1, every_param: bool = False):
    """Yields, per step, one list per group of a gradient tensor or None (never with `every_param`). Gradients are a
    fixed drift plus noise, so that signs persist on some coordinates (gains grow) and flip on others (shrink)."""
    gen = torch.Generator().manual_seed(seed)
    drift = [[torch.randn(p.shape, generator=gen, dtype=torch.float64) for p in ps] for ps in groups]
    for k in range(steps):
        out = []
        for gi, ps in enumerate(groups):
            row = []
            for pi, p in enumerate(ps):
                noise = torch.randn(p.shape, generator=gen, dtype=torch.float64)
                g = (drift[gi][pi] + 0.7 * noise).to(p.dtype)
                if not every_param and ((gi, pi) == NEVER_GRAD or ((gi, pi) == SOMETIMES_NO_GRAD and k % 3 == 2)):
                    g = None
                row.append(g)
            out.append(row)
        yield out


def set_grads(groups: list[list[Tensor]], grads: list[list[Tensor | None]]) -> None:
    for ps, gs in zip(groups, grads):
        for p, g in zip(ps, gs):
            p.grad = None if g is None else g.clone()


def clone_groups(groups: list[list[Tensor]]) -> list[list[Tensor]]:
    return [[p.detach().clone().requires_grad_() for p in ps] for ps in groups]


def least_squares(seed: int = 0, n: int = 40, d: int = 8):
    """A well-conditioned least-squares problem: returns (params, loss_fn)."""
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(n, d, generator=gen)
    x_true = torch.randn(d, generator=gen)
    b = a @ x_true + 0.01 * torch.randn(n, generator=gen)
    x = torch.zeros(d, requires_grad=True)
    return [x], lambda: ((a @ x - b) ** 2).mean()


def logistic_regression(seed: int = 0, n: int = 200, d: int = 10, classes: int = 3):
    """Softmax regression on Gaussian blobs: returns (params, loss_fn)."""
    gen = torch.Generator().manual_seed(seed)
    centers = 2.0 * torch.randn(classes, d, generator=gen)
    y = torch.randint(classes, (n,), generator=gen)
    x = centers[y] + torch.randn(n, d, generator=gen)
    w = torch.zeros(d, classes, requires_grad=True)
    b = torch.zeros(classes, requires_grad=True)
    return [w, b], lambda: torch.nn.functional.cross_entropy(x @ w + b, y)
