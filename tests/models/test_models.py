"""The models' shapes and options, against timm's registered networks where there is one."""
from __future__ import annotations

import pytest
import timm
import torch
from torch import nn

from funnel.models import SmallCNN, mobilenet_v1


def test_mobilenet_v1_at_width_1_is_timms_network():
    ours = mobilenet_v1((3, 32, 32), 10, width=1.0)
    reference = timm.create_model("mobilenetv1_100", pretrained=False, num_classes=10)
    assert [(n, p.shape) for n, p in ours.named_parameters()] == \
        [(n, p.shape) for n, p in reference.named_parameters()]
    assert sum(p.numel() for p in ours.parameters()) == 3_217_226
    assert ours.conv_stem.stride == (1, 1) and reference.conv_stem.stride == (2, 2)


@pytest.mark.parametrize("width, stem, last", [(0.25, 8, 256), (0.5, 16, 512)])
def test_mobilenet_v1_width_multiplies_every_layer(width, stem, last):
    model = mobilenet_v1((1, 28, 28), 10, width=width)
    assert model.conv_stem.out_channels == stem and model.conv_stem.in_channels == 1
    assert model.classifier.in_features == last
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_mobilenet_v1_refuses_a_bad_width():
    with pytest.raises(ValueError, match="model.width must be in"):
        mobilenet_v1((3, 32, 32), 10, width=0)


def test_small_cnn_batch_norm_option():
    plain, normed = SmallCNN((1, 28, 28), 10, width=4), SmallCNN((1, 28, 28), 10, width=4, batch_norm=True)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in plain.modules())
    assert [m.num_features for m in normed.modules() if isinstance(m, nn.BatchNorm2d)] == [4, 8]
    assert all(m.bias is None for m in normed.modules() if isinstance(m, nn.Conv2d))  # BN's shift replaces it
    x = torch.rand(3, 1, 28, 28)
    assert plain(x).shape == normed(x).shape == (3, 10)
