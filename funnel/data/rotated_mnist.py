"""Rotated-noisy MNIST with a distribution shift (Funnel paper section 4.1; docs/experiments.md, section 1).

Train, validation and test are each split into three disjoint subsets; subset k is rotated by angles[k]
(bilinear, about the centre, 28x28 kept) and then every pixel below `noise_threshold` is replaced by U[0, 1]
noise, drawn once per image at build time. Training runs through `phases`, one angle per phase.

With one angle of 0 and noise_threshold 0 the same builder gives the plain dataset (configs/dataset/fashion_mnist.yaml),
whose evaluation sets are then just "val" and "test".
"""
from __future__ import annotations

from pathlib import Path

import torch
import torchvision.transforms.functional as TF
from torchvision.transforms import InterpolationMode

from .base import Phase, TaskData, TensorSet, random_crop_flip
from .sources import load_fashion_mnist, load_mnist, load_mnist_5k

BASES = ("mnist", "mnist_5k", "fashion_mnist")


def rotate_and_noise(x: torch.Tensor, angle: float, noise_threshold: float, gen: torch.Generator) -> torch.Tensor:
    """uint8 (N, 28, 28) -> float (N, 1, 28, 28) in [0, 1]: rotate first, then replace dark pixels by noise."""
    x = x.float().div_(255).unsqueeze(1)
    if angle % 360 != 0:
        x = TF.rotate(x, angle, interpolation=InterpolationMode.BILINEAR)
    noise = torch.rand(x.shape, generator=gen)
    return torch.where(x < noise_threshold, noise, x)


def _split(n: int, parts: int, gen: torch.Generator) -> list[torch.Tensor]:
    return list(torch.randperm(n, generator=gen).tensor_split(parts))


def build_rotated_mnist(base: str = "mnist_5k", root: str | Path = "data", download: bool = False,
                        angles=(0, 45, 90), phases=(90, 0, 45), val_size: int = 5000,
                        split_fractions=(0.6, 0.2, 0.2), noise_threshold: float = 1e-2, seed: int = 0,
                        mnist_5k_path: str | None = None, name: str = "rotated_mnist", augment: bool = False,
                        crop_pad: int = 2) -> TaskData:
    """Build the dataset. `val_size` is held out of the training images for mnist and fashion_mnist; mnist_5k has
    no test split, so its 5,000 digits are shuffled and split by `split_fractions` (train, val, test).
    `augment`: training batches get a random 28x28 crop of the image zero-padded by `crop_pad` pixels and a
    horizontal flip with probability 1/2 (drawn on the device, per step; the evaluation sets are never augmented)."""
    if crop_pad < 0:
        raise ValueError(f"dataset.crop_pad must be >= 0, got {crop_pad}")
    if base not in BASES:
        raise ValueError(f"Unknown dataset.base {base!r}; valid: {', '.join(BASES)}")
    angles, phases = [float(a) for a in angles], [float(a) for a in phases]
    unknown = [a for a in phases if a not in angles]
    if unknown:
        raise ValueError(f"dataset.phases {unknown} are not among dataset.angles {angles}")
    gen = torch.Generator().manual_seed(seed)
    if base == "mnist_5k":
        x, y = load_mnist_5k(mnist_5k_path)
        perm = torch.randperm(len(y), generator=gen)  # the file is sorted by class
        sizes = [round(f * len(y)) for f in split_fractions[:2]]
        splits = dict(zip(("train", "val", "test"), perm.split([sizes[0], sizes[1], len(y) - sum(sizes)])))
        raw = {name: (x[idx], y[idx]) for name, idx in splits.items()}
    else:
        load = load_mnist if base == "mnist" else load_fashion_mnist
        train_x, train_y, test_x, test_y = load(root, download)
        if not 0 < val_size < len(train_y):
            raise ValueError(f"dataset.val_size={val_size} must be in (0, {len(train_y)}) for {base}")
        perm = torch.randperm(len(train_y), generator=gen)
        val_idx, train_idx = perm[:val_size], perm[val_size:]
        raw = {"train": (train_x[train_idx], train_y[train_idx]), "val": (train_x[val_idx], train_y[val_idx]),
               "test": (test_x, test_y)}

    subsets: dict[str, dict[float, TensorSet]] = {}
    for split, (x, y) in raw.items():
        subsets[split] = {}
        for angle, idx in zip(angles, _split(len(y), len(angles), gen)):
            subsets[split][angle] = TensorSet(rotate_and_noise(x[idx], angle, noise_threshold, gen), y[idx].long())

    key = lambda a: f"angle{a:g}"
    if len(angles) == 1:  # not a shift experiment: plain "val" and "test" sets, one phase
        phase_list = [Phase("train", subsets["train"][angles[0]]) for _ in phases]
        eval_sets = {split: subsets[split][angles[0]] for split in ("val", "test")}
    else:
        phase_list = [Phase(key(a), subsets["train"][a], current_eval=key(a)) for a in phases]
        eval_sets = {f"{split}/{key(a)}": subsets[split][a] for split in ("val", "test") for a in angles}
    return TaskData(
        name=name, input_shape=(1, 28, 28), num_classes=10, phases=phase_list, eval_sets=eval_sets,
        train_transform=(lambda x, gen: random_crop_flip(x, gen, crop_pad)) if augment else None,
        info=dict(base=base, angles=angles, phases=phases, seed=seed, augment=augment,
                  sizes={split: {key(a): len(s) for a, s in subsets[split].items()} for split in subsets}))
