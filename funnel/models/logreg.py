import math

import torch
from torch import nn


class LogisticRegression(nn.Module):
    """Multinomial logistic regression: flatten, one linear layer (softmax is in the loss)."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int):
        super().__init__()
        self.linear = nn.Linear(math.prod(input_shape), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))
