import torch
from torch import nn


class SmallCNN(nn.Module):
    """Two conv-ReLU-maxpool blocks and a two-layer head: trains in minutes on a CPU for 28x28 or 32x32 images.
    No BatchNorm by default, so runs on several DDP ranks reproduce a one-rank run; `batch_norm=True` puts one after
    each convolution (the regime of the paper's networks, where large learning rates train and a schedule matters)."""

    def __init__(self, input_shape: tuple[int, int, int], num_classes: int, width: int = 32, hidden: int = 128,
                 batch_norm: bool = False):
        super().__init__()
        c, h, w = input_shape
        if h < 4 or w < 4:
            raise ValueError(f"SmallCNN needs images of at least 4x4 pixels, got {h}x{w}")
        norm = (lambda n: nn.BatchNorm2d(n)) if batch_norm else (lambda n: nn.Identity())
        self.features = nn.Sequential(
            nn.Conv2d(c, width, 3, padding=1, bias=not batch_norm), norm(width), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1, bias=not batch_norm), norm(2 * width), nn.ReLU(),
            nn.MaxPool2d(2))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(2 * width * (h // 4) * (w // 4), hidden), nn.ReLU(),
                                  nn.Linear(hidden, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
