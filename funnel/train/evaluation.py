"""Evaluation: loss and accuracy of a model on a dataset (each DDP rank taking its shard), and Schedule-Free's
averaged point with BatchNorm statistics computed there."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from funnel.data.base import shard
from funnel.train import distributed
from funnel.train.build import loss_dtype
from funnel.train.plan import batch_stream


@torch.no_grad()
def evaluate(model, dataset, transform, batch_size: int, ddp, num_workers: int, autocast,
             dtype: torch.dtype = torch.float32) -> dict[str, float]:
    """Loss, top-1 and top-5 accuracy (%) of `model` (its parameters in `dtype`) on `dataset`, each rank taking its
    shard."""
    model.eval()
    n = len(dataset)
    sums = torch.zeros(4, dtype=torch.float64, device=ddp.device)  # loss, top1, top5, count
    chunks = list(shard(torch.arange(n), ddp.rank, ddp.world_size).split(batch_size))
    for x, y in batch_stream(dataset, chunks, ddp.device, num_workers):
        x, y = x.to(ddp.device, non_blocking=True), y.to(ddp.device, non_blocking=True)
        x = (transform(x, None) if transform else x).to(dtype)
        with autocast:
            logits = model(x).to(loss_dtype(dtype))
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        hits = top == y.view(-1, 1)
        sums += torch.stack([F.cross_entropy(logits, y, reduction="sum").double(), hits[:, 0].sum().double(),
                             hits.any(1).sum().double(), torch.tensor(len(y), dtype=torch.float64, device=ddp.device)])
    distributed.all_reduce(sums)
    model.train()
    loss, top1, top5, count = sums.tolist()
    return {"loss": loss / count, "top1": 100 * top1 / count, "top5": 100 * top5 / count}


def has_eval_mode(optimizer) -> bool:
    """Schedule-Free optimizers evaluate at an averaged point: optimizer.eval() moves the parameters there and
    optimizer.train() back; torch.optim optimizers have neither."""
    return callable(getattr(optimizer, "eval", None)) and callable(getattr(optimizer, "train", None))


@torch.no_grad()
def recompute_batchnorm(model, dataset, transform, batches: list[torch.Tensor], ddp, num_workers: int,
                        autocast, dtype: torch.dtype = torch.float32) -> None:
    """BatchNorm running statistics computed afresh at the current parameters (a cumulative average over
    `batches` of training data), as Schedule-Free's averaged point needs; averaged over DDP ranks."""
    norms = [m for m in model.modules()
             if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    was_training = model.training
    model.train()
    gen = torch.Generator(device=ddp.device).manual_seed(0)
    for x, _ in batch_stream(dataset, [shard(b, ddp.rank, ddp.world_size) for b in batches], ddp.device, num_workers):
        x = x.to(ddp.device, non_blocking=True)
        with autocast:
            model((transform(x, gen) if transform else x).to(dtype))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
        if ddp.enabled:
            for buffer in (m.running_mean, m.running_var):
                distributed.all_reduce(buffer).div_(ddp.world_size)
    model.train(was_training)
