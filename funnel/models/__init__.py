"""Models. Every builder takes `input_shape` (C, H, W) and `num_classes` from the dataset."""
from .logreg import LogisticRegression
from .mobilenet_v1 import mobilenet_v1
from .resnet import resnet50
from .small_cnn import SmallCNN

__all__ = ["LogisticRegression", "SmallCNN", "mobilenet_v1", "resnet50"]
