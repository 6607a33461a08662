from torch import nn

VARIANTS = ("cifar", "imagenet")


def mobilenet_v1(input_shape: tuple[int, int, int], num_classes: int, variant: str = "cifar",
                 width: float = 1.0) -> nn.Module:
    """timm's MobileNetV1 (13 depthwise-separable blocks). variant="cifar" makes the stem stride 1, which gives a
    2x2 final map for 32x32 inputs (3,217,226 parameters with 10 classes); "imagenet" is the standard network."""
    if variant not in VARIANTS:
        raise ValueError(f"Unknown model.variant {variant!r}; valid: {', '.join(VARIANTS)}")
    c, h, w = input_shape
    if variant == "imagenet" and min(h, w) < 64:
        raise ValueError(f"mobilenet_v1 variant 'imagenet' downsamples by 32 and needs images of at least 64x64; "
                         f"the dataset gives {h}x{w}: use model.variant=cifar")
    import timm

    name = {1.0: "mobilenetv1_100", 0.75: "mobilenetv1_075", 1.25: "mobilenetv1_125"}.get(width)
    if name is None:
        raise ValueError(f"model.width must be one of 0.75, 1.0, 1.25, got {width}")
    model = timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=c)
    if variant == "cifar":
        model.conv_stem.stride = (1, 1)
    return model
