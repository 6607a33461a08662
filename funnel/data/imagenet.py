"""ImageNet from disk in the ImageFolder layout (`<root>/train/<wnid>/*.JPEG`, `<root>/val/<wnid>/*.JPEG`; this is
also the layout torchvision's ImageNet prepares). Never downloaded. Read by DataLoader workers with the standard
random-resized-crop + flip (train) and resize + centre-crop (eval) transforms."""
from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torchvision import transforms as T

from .base import DatasetNotFoundError, Phase, TaskData

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def build_imagenet(root: str | Path = "data/imagenet", image_size: int = 224, eval_resize: int = 256,
                   val_size: int = 0, seed: int = 0) -> TaskData:
    """"test" is the ILSVRC validation folder (what papers report); `val_size` > 0 holds out that many training
    images (seeded) as "val" for tuning."""
    root = Path(root)
    for split in ("train", "val"):
        folder = root / split
        if not folder.is_dir() or not any(p.is_dir() for p in folder.iterdir()):
            raise DatasetNotFoundError(
                f"ImageNet not found: {folder} must hold one folder per class with its images "
                f"({folder}/n01440764/*.JPEG, ...). ImageNet is never downloaded: get ILSVRC2012 from "
                "https://image-net.org, extract train/ and val/ into class folders (e.g. with "
                "torchvision.datasets.ImageNet(root, split=...), which prepares this layout), and set dataset.root.")
    normalize = T.Normalize(MEAN, STD)
    train_tf = T.Compose([T.RandomResizedCrop(image_size), T.RandomHorizontalFlip(), T.ToTensor(), normalize])
    eval_tf = T.Compose([T.Resize(eval_resize), T.CenterCrop(image_size), T.ToTensor(), normalize])
    train = torchvision.datasets.ImageFolder(str(root / "train"), transform=train_tf)
    test = torchvision.datasets.ImageFolder(str(root / "val"), transform=eval_tf)
    if test.classes != train.classes:
        raise ValueError(f"{root}/val has classes {test.classes[:5]}... that differ from {root}/train's")
    eval_sets: dict = {"test": test}
    if val_size:
        if not 0 < val_size < len(train):
            raise ValueError(f"dataset.val_size={val_size} must be in [0, {len(train)})")
        perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed)).tolist()
        held_out = torchvision.datasets.ImageFolder(str(root / "train"), transform=eval_tf)
        eval_sets["val"] = torch.utils.data.Subset(held_out, perm[:val_size])
        train = torch.utils.data.Subset(train, perm[val_size:])
    return TaskData("imagenet", (3, image_size, image_size), len(test.classes), [Phase("train", train)], eval_sets,
                    info=dict(root=str(root), train=len(train), test=len(test), val=val_size))
