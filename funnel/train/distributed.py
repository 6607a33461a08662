"""DDP from the environment that torchrun (or SLURM through submitit) sets, and a clean exit for its workers."""
from __future__ import annotations

import datetime
import hashlib
import os
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Distributed:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def _export_slurm_environment() -> None:
    """Under SLURM without torchrun (the submitit launcher), derive RANK/WORLD_SIZE/MASTER_ADDR from SLURM."""
    if "RANK" in os.environ or int(os.environ.get("SLURM_NTASKS", "1")) <= 1:
        return
    try:
        import submitit
    except ImportError as err:
        raise RuntimeError("A multi-task SLURM job needs submitit (pip install hydra-submitit-launcher) or torchrun "
                           "to set RANK/WORLD_SIZE") from err
    submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)


def setup(device: str = "auto", timeout_s: float = 600) -> Distributed:
    """Join the process group if this is one of several ranks (once per process: re-initialising hangs), and
    pick this rank's device ("auto": its GPU when there is one, else the CPU). A collective that waits more than
    `timeout_s` (a rank died or hangs) raises instead of blocking the others for torch's default of 30 minutes."""
    _export_slurm_environment()
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "auto":
        device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    device = usable_device(device, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo",
                                timeout=datetime.timedelta(seconds=timeout_s))
        if device.type == "cpu":  # share the cores between the ranks of this node
            local = int(os.environ.get("LOCAL_WORLD_SIZE", world_size))
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // local))
    return Distributed(rank, world_size, local_rank, device)


def usable_device(name: str, local_rank: int) -> torch.device:
    """`trainer.device` as a device this machine has ("cuda" is this rank's GPU), or a ValueError saying what to
    set instead."""
    fix = "use trainer.device=auto (this rank's GPU when there is one, else the CPU) or trainer.device=cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"trainer.device={name!r} is not a device ({str(err).splitlines()[0]}): {fix}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"trainer.device={name} but torch finds no GPU on this machine: {fix}")
        device = torch.device("cuda", local_rank if device.index is None else device.index)
        if device.index >= torch.cuda.device_count():
            raise ValueError(f"trainer.device={name}: this machine has {torch.cuda.device_count()} GPU(s): {fix}")
    elif device.type != "cpu":
        raise ValueError(f"trainer.device={name}: the runner trains on CPUs and CUDA GPUs: {fix}")
    return device


class RanksTimedOut(RuntimeError):
    """A collective waited longer than trainer.ddp_timeout_s: another rank died or hangs."""

    def __init__(self, ddp: Distributed, timeout_s: float, err: BaseException):
        first = (str(err).splitlines() or [""])[0][:200]
        super().__init__(f"rank {ddp.rank} of {ddp.world_size}: the other ranks did not answer within "
                         f"trainer.ddp_timeout_s={timeout_s:g} s (one died or hangs; its own log says why): {first}")


def is_timeout(err: BaseException) -> bool:
    return isinstance(err, RuntimeError) and ("timed out" in str(err).lower() or "timeout" in str(err).lower())


def all_reduce(tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """In-place sum or max over the ranks (a no-op on one process)."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(tensor, op={"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX}[op])
    return tensor


def exit_cleanly(code: int = 0) -> None:
    """End a torchrun worker without the interpreter-exit abort that torch sometimes hits with gloo: barrier,
    destroy the process group, flush, and leave with os._exit. A single process just returns."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    dist.barrier()
    dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def state_digest(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> str:
    """sha256 of every parameter and optimizer-state tensor: equal on all DDP ranks when they are in sync."""
    h = hashlib.sha256()
    for p in model.parameters():
        h.update(p.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())

    def visit(value):
        if isinstance(value, torch.Tensor):
            h.update(value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
        elif isinstance(value, dict):
            for k in sorted(value, key=str):
                visit(value[k])
        else:
            h.update(repr(value).encode())

    for p in model.parameters():
        visit(optimizer.state.get(p, {}))
    return h.hexdigest()
