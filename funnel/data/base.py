"""The data interface of the training loop, and the batching that every dataset shares.

A `TaskData` has one or more training phases (rotated MNIST trains on one angle per phase; the others have one
phase) and named evaluation sets ("test/angle0", "val", ...). Small datasets are `TensorSet`s: preprocessed once
and kept as tensors (moved to the GPU when there is one). Large ones (ImageNet) are torch Datasets read by a
DataLoader.

Batches are drawn from a permutation that depends only on (seed, phase, epoch), and each *global* batch is split
across DDP ranks (rank r takes every world-th index of it). So a run on N ranks sees exactly the samples that a
one-rank run with the same global batch sees at each step, and a resumed run needs only the step number to
continue where it stopped.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor


class DatasetNotFoundError(FileNotFoundError):
    """Raised with a message that says where the files must go and how to get them."""


@dataclass
class TensorSet:
    x: Tensor  # (N, C, H, W), float in [0, 1] or uint8
    y: Tensor  # (N,) int64

    def __len__(self) -> int:
        return len(self.y)

    def to(self, device) -> TensorSet:
        return TensorSet(self.x.to(device), self.y.to(device))


@dataclass
class Phase:
    name: str
    train: TensorSet | torch.utils.data.Dataset
    current_eval: str | None = None  # eval sets "<split>/<current_eval>" are also reported as "<split>/current"


# (x uint8/float batch on device, torch.Generator or None) -> float batch ready for the model
BatchTransform = Callable[[Tensor, torch.Generator | None], Tensor]


@dataclass
class TaskData:
    name: str
    input_shape: tuple[int, int, int]
    num_classes: int
    phases: list[Phase]
    eval_sets: dict[str, TensorSet | torch.utils.data.Dataset]
    train_transform: BatchTransform | None = None  # applied on the device to TensorSet batches
    eval_transform: BatchTransform | None = None
    info: dict = field(default_factory=dict)  # provenance for summary.json (source files, sizes, seeds)

    def to(self, device) -> TaskData:
        """Move the in-memory tensors to `device` (torch Datasets stay where they are)."""
        move = lambda s: s.to(device) if isinstance(s, TensorSet) else s
        phases = [Phase(p.name, move(p.train), p.current_eval) for p in self.phases]
        return TaskData(self.name, self.input_shape, self.num_classes, phases,
                        {k: move(v) for k, v in self.eval_sets.items()}, self.train_transform,
                        self.eval_transform, self.info)


def steps_per_epoch(n: int, global_batch: int, drop_last: bool) -> int:
    return n // global_batch if drop_last else math.ceil(n / global_batch)


def epoch_batches(n: int, global_batch: int, drop_last: bool, seed: int, phase: int, epoch: int) -> list[Tensor]:
    """The global batches of one epoch: index tensors into a set of size n, in a seeded random order."""
    gen = torch.Generator().manual_seed(hash((seed, phase, epoch)) % (2**63))
    perm = torch.randperm(n, generator=gen)
    return [perm[i * global_batch:(i + 1) * global_batch] for i in range(steps_per_epoch(n, global_batch, drop_last))]


def shard(indices: Tensor, rank: int, world_size: int) -> Tensor:
    """This rank's part of a global batch (or of an evaluation set)."""
    return indices[rank::world_size]


def random_crop_flip(x: torch.Tensor, gen: torch.Generator | None, pad: int = 4) -> torch.Tensor:
    """Per sample: a random HxW crop of the zero-padded image, then a horizontal flip with probability 1/2."""
    n, c, h, w = x.shape
    device = gen.device if gen is not None else torch.device("cpu")
    dy = torch.randint(0, 2 * pad + 1, (n, 1), generator=gen, device=device).to(x.device)
    dx = torch.randint(0, 2 * pad + 1, (n, 1), generator=gen, device=device).to(x.device)
    flip = (torch.rand(n, 1, generator=gen, device=device) < 0.5).to(x.device)
    rows = dy + torch.arange(h, device=x.device)  # (n, h)
    cols = torch.arange(w, device=x.device).expand(n, w)
    cols = dx + torch.where(flip, w - 1 - cols, cols)  # (n, w)
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    out = padded.gather(2, rows.view(n, 1, h, 1).expand(n, c, h, w + 2 * pad))
    return out.gather(3, cols.view(n, 1, 1, w).expand(n, c, h, w))
