from torch import nn

VARIANTS = ("cifar", "imagenet")


def mobilenet_v1(input_shape: tuple[int, int, int], num_classes: int, variant: str = "cifar",
                 width: float = 1.0) -> nn.Module:
    """timm's MobileNetV1 (13 depthwise-separable blocks). variant="cifar" makes the stem stride 1, which gives a
    2x2 final map for 32x32 inputs (3,217,226 parameters with 10 classes); "imagenet" is the standard network.
    `width` is the paper's width multiplier: every layer's channels times it (timm's rounding to multiples of 8)."""
    if variant not in VARIANTS:
        raise ValueError(f"Unknown model.variant {variant!r}; valid: {', '.join(VARIANTS)}")
    c, h, w = input_shape
    if variant == "imagenet" and min(h, w) < 64:
        raise ValueError(f"mobilenet_v1 variant 'imagenet' downsamples by 32 and needs images of at least 64x64; "
                         f"the dataset gives {h}x{w}: use model.variant=cifar")
    if not 0 < width <= 4:
        raise ValueError(f"model.width must be in (0, 4], got {width}")
    # timm registers only widths 1.0 and 1.25 by name; its generator takes any multiplier and builds the
    # same network (parameter names included) for those two.
    from timm.models.efficientnet import _gen_mobilenet_v1

    model = _gen_mobilenet_v1("mobilenetv1_100", channel_multiplier=width, num_classes=num_classes, in_chans=c)
    if variant == "cifar":
        model.conv_stem.stride = (1, 1)
    return model
