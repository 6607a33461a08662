"""Where each step falls (phase, epoch within the phase, batch within the epoch) and the batches it reads."""
from __future__ import annotations

import numpy as np
import torch

from funnel.data.base import TaskData, TensorSet, steps_per_epoch


class Plan:
    """Where each step falls: phase, epoch within the phase, batch within the epoch."""

    def __init__(self, data: TaskData, epochs: int, global_batch: int, drop_last: bool, max_steps: int | None):
        smallest = min(len(p.train) for p in data.phases)
        if global_batch > smallest:  # every step would take the whole set, and the records would say otherwise
            raise ValueError(f"trainer.batch_size={global_batch} is larger than the training set ({smallest} samples"
                             f"{' in its smallest phase' if len(data.phases) > 1 else ''}): set trainer.batch_size="
                             f"{smallest} for full-batch training")
        self.per_epoch = [steps_per_epoch(len(p.train), global_batch, drop_last) for p in data.phases]
        self.epochs = epochs
        self.starts = np.cumsum([0] + [epochs * n for n in self.per_epoch]).tolist()
        self.total = self.starts[-1] if max_steps is None else min(int(max_steps), self.starts[-1])
        if max_steps is not None and max_steps > self.starts[-1]:
            raise ValueError(f"trainer.max_steps={max_steps} exceeds trainer.epochs={epochs} worth of data "
                             f"({self.starts[-1]} steps): raise trainer.epochs")

    def position(self, step: int) -> tuple[int, int, int]:
        phase = max(i for i, start in enumerate(self.starts[:-1]) if step >= start)
        epoch, batch = divmod(step - self.starts[phase], self.per_epoch[phase])
        return phase, epoch, batch

    def ends_epoch(self, step: int) -> bool:
        phase, _, batch = self.position(step)
        return batch == self.per_epoch[phase] - 1

    def ends_phase(self, step: int) -> bool:
        return step + 1 in self.starts[1:]


def batch_stream(dataset, batches: list[torch.Tensor], device: torch.device, num_workers: int):
    """Yields (x, y) for each index tensor in `batches`: gathered from a TensorSet, or read by DataLoader
    workers from a torch Dataset."""
    if isinstance(dataset, TensorSet):
        for idx in batches:
            idx = idx.to(dataset.x.device)
            yield dataset.x[idx], dataset.y[idx]
        return
    yield from torch.utils.data.DataLoader(dataset, batch_sampler=[idx.tolist() for idx in batches],
                                           num_workers=num_workers, pin_memory=device.type == "cuda")
