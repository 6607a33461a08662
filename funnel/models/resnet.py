import torchvision
from torch import nn


def resnet50(input_shape: tuple[int, int, int], num_classes: int, zero_init_residual: bool = True) -> nn.Module:
    """torchvision's ResNet-50 (random init). zero_init_residual zeroes the last BN gamma of every block, as in
    Goyal et al.'s large-batch recipe."""
    c, h, w = input_shape
    if min(h, w) < 32:
        raise ValueError(f"resnet50 downsamples by 32 and needs images of at least 32x32; the dataset gives {h}x{w}")
    model = torchvision.models.resnet50(weights=None, num_classes=num_classes, zero_init_residual=zero_init_residual)
    if c != 3:
        model.conv1 = nn.Conv2d(c, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return model
