"""CIFAR-10 from torchvision's files, kept as uint8 tensors and augmented on the device (crop + flip)."""
from __future__ import annotations

from pathlib import Path

import torch
import torchvision

from .base import DatasetNotFoundError, Phase, TaskData, TensorSet, random_crop_flip

MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)
FILES = ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch",
         "batches.meta"]


class _CIFAR10Files(torchvision.datasets.CIFAR10):
    """torchvision's reader with the md5 sums set to None, so it trusts files already on disk (it then checks
    only that they exist); a download (dataset.download=true) uses the stock class, which checks them."""

    train_list = [[name, None] for name, _ in torchvision.datasets.CIFAR10.train_list]
    test_list = [[name, None] for name, _ in torchvision.datasets.CIFAR10.test_list]
    meta = {**torchvision.datasets.CIFAR10.meta, "md5": None}


def make_transforms(augment: bool):
    """(train, eval) batch transforms: uint8 (N, 3, 32, 32) on any device -> normalized float."""
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)

    def evaluate(x, gen=None):
        return (x.float().div(255) - mean.to(x.device)) / std.to(x.device)

    def train(x, gen=None):
        if augment:
            x = random_crop_flip(x, gen)
        return evaluate(x)

    return train, evaluate


def build_cifar10(root: str | Path = "data", download: bool = False, val_size: int = 5000, augment: bool = True,
                  seed: int = 0) -> TaskData:
    """CIFAR-10 with `val_size` training images held out (seeded) as "val" and the official test set as "test"."""
    root = Path(root)
    try:
        cls = torchvision.datasets.CIFAR10 if download else _CIFAR10Files
        train = cls(str(root), train=True, download=download)
        test = cls(str(root), train=False, download=download)
    except RuntimeError as err:
        folder = root / "cifar-10-batches-py"
        missing = [f for f in FILES if not (folder / f).exists()]
        raise DatasetNotFoundError(
            f"CIFAR-10 not found or unreadable ({err}): {folder} must hold {FILES} (missing: {missing}). Run with "
            "dataset.download=true where there is network, or unpack cifar-10-python.tar.gz "
            "(https://www.cs.toronto.edu/~kriz/cifar.html) into that folder.") from err
    to_set = lambda ds: TensorSet(torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous(),
                                  torch.tensor(ds.targets, dtype=torch.long))
    full, test_set = to_set(train), to_set(test)
    if not 0 <= val_size < len(full):
        raise ValueError(f"dataset.val_size={val_size} must be in [0, {len(full)})")
    perm = torch.randperm(len(full), generator=torch.Generator().manual_seed(seed))
    train_set = TensorSet(full.x[perm[val_size:]], full.y[perm[val_size:]])
    eval_sets = {"test": test_set}
    if val_size:
        eval_sets["val"] = TensorSet(full.x[perm[:val_size]], full.y[perm[:val_size]])
    train_tf, eval_tf = make_transforms(augment)
    return TaskData("cifar10", (3, 32, 32), 10, [Phase("train", train_set)], eval_sets, train_tf, eval_tf,
                    info=dict(root=str(root), train=len(train_set), val=val_size, test=len(test_set), seed=seed))
