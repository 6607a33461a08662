"""The training loop, flat and top to bottom: `train(cfg, run_dir)` builds data, model, optimizer and schedule from a
composed Hydra config, trains (on one process or as one DDP rank), evaluates, checkpoints, and leaves
metrics.jsonl, gains.npz and summary.json in `run_dir`.
"""
from __future__ import annotations

import hashlib
import math
import os
import random
import signal
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from hydra.errors import InstantiationException
from hydra.utils import instantiate as hydra_instantiate
from omegaconf import DictConfig, OmegaConf
from torch.nn.parallel import DistributedDataParallel

from funnel.data.base import TaskData, TensorSet, epoch_batches, shard, steps_per_epoch
from funnel.optim import optimizer_stats
from funnel.optim.registry import REGISTRY, takes_loss
from funnel.train import checkpoint, distributed
from funnel.train.records import GainTrajectories, MetricsLog, git_state, write_json
from funnel.train.schedules import Constant

SOURCE_DIR = Path(__file__).resolve().parents[2]
# Fault injection for the kill-and-resume test: SIGKILL this process right after the given step (and its
# checkpoint, if one is due), as a crash or a pre-empted job would.
KILL_AT_STEP = int(os.environ.get("FUNNEL_KILL_AT_STEP", "0"))


# ----------------------------------------------------------------------------------------------- helpers
def instantiate(cfg, **kwargs):
    """hydra's instantiate, re-raising the errors a user can act on (a bad value, missing files or packages) as they are
    instead of wrapped in Hydra's InstantiationException."""
    try:
        return hydra_instantiate(cfg, **kwargs)
    except InstantiationException as err:
        if isinstance(err.__cause__, (ValueError, FileNotFoundError, ImportError)):
            raise err.__cause__ from None
        raise


def build_model(model_cfg: DictConfig, data: TaskData) -> torch.nn.Module:
    """The configured model for `data`'s inputs and classes, with a clear error when the two do not fit."""
    from_data = {"num_classes": data.num_classes, "input_shape": list(data.input_shape)}
    for key, value in from_data.items():
        given = model_cfg.get(key)
        given = OmegaConf.to_object(given) if OmegaConf.is_config(given) else given
        if given is not None and given != value:
            raise ValueError(f"model.{key}={given} but dataset {data.name} gives {value}: remove the override")
    model = instantiate(model_cfg, num_classes=data.num_classes, input_shape=data.input_shape)
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros(2, *data.input_shape))
    except Exception as err:
        raise ValueError(f"model {model_cfg._target_} cannot take dataset {data.name}'s inputs of shape "
                         f"{data.input_shape}: {err}") from err
    if tuple(out.shape) != (2, data.num_classes):
        raise ValueError(f"model {model_cfg._target_} gives outputs of shape {tuple(out.shape[1:])} for dataset "
                         f"{data.name}, which has {data.num_classes} classes")
    return model.train()


class Plan:
    """Where each step falls: phase, epoch within the phase, batch within the epoch."""

    def __init__(self, data: TaskData, epochs: int, global_batch: int, drop_last: bool, max_steps: int | None):
        self.per_epoch = [steps_per_epoch(len(p.train), global_batch, drop_last) for p in data.phases]
        if min(self.per_epoch) == 0:
            raise ValueError(f"trainer.batch_size={global_batch} is larger than a training set "
                             f"({min(len(p.train) for p in data.phases)} samples) with trainer.drop_last=true")
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


def refuse_unresumable(optimizer_cfg: DictConfig, ckpt_path: Path) -> None:
    """A registry optimizer whose state does not survive a checkpoint is never resumed: it would silently train on
    from a different state than an uninterrupted run."""
    spec = REGISTRY.get(optimizer_cfg.get("name") or "")
    if spec is not None and spec.cannot_resume:
        raise ValueError(f"{ckpt_path} is a checkpoint of optimizer {spec.name!r}, which cannot be resumed: "
                         f"{spec.cannot_resume}. Delete {ckpt_path} to train the run again from the start.")


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


DTYPES = {"float32": torch.float32, "float64": torch.float64}


def parameter_dtype(name: str) -> torch.dtype:
    """`trainer.dtype`: the dtype of the model's parameters, its inputs and so of the optimizer state."""
    if name not in DTYPES:
        raise ValueError(f"trainer.dtype={name!r} is not one of {sorted(DTYPES)} (for bf16, set trainer.bf16=true)")
    return DTYPES[name]


def loss_dtype(dtype: torch.dtype) -> torch.dtype:
    """Logits are upcast to at least fp32 for the loss (bf16 autocast gives bf16 logits); fp64 stays fp64."""
    return torch.promote_types(dtype, torch.float32)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# ----------------------------------------------------------------------------------------------- the loop
def train(cfg: DictConfig, run_dir: str | Path) -> float | None:
    """Train as configured; returns `trainer.objective` from the final evaluation (for Hydra sweepers), if set."""
    session_start = time.perf_counter()
    run_dir = Path(run_dir)
    tc = cfg.trainer
    ddp = distributed.setup(tc.device)
    summary_path, ckpt_path = run_dir / "summary.json", run_dir / checkpoint.LAST
    if tc.resume and summary_path.exists():
        # a restarted sweep skips the runs that already ended (finished or diverged)
        import json
        summary = json.loads(summary_path.read_text())
        if ddp.is_main:
            print(f"{run_dir}: already {summary['status']} (delete summary.json to train again)")
        return summary.get("objective")

    dtype = parameter_dtype(tc.dtype)
    if tc.bf16 and dtype != torch.float32:
        raise ValueError(f"trainer.bf16=true autocasts float32 parameters; with trainer.dtype={tc.dtype} it would "
                         "do nothing: set one of the two")
    seed_everything(cfg.seed)
    if tc.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False

    # data, model, optimizer, schedule
    data: TaskData = instantiate(cfg.dataset)
    if ddp.device.type == "cuda":
        data = data.to(ddp.device)  # small datasets live on the GPU: no per-batch host-to-device copies
    model = build_model(cfg.model, data).to(ddp.device, dtype)
    named_params = list(model.named_parameters())
    optimizer = instantiate(cfg.optimizer)(model.parameters())
    schedule = instantiate(cfg.schedule)
    adapts_lr = getattr(optimizer, "adapts_lr", False)
    if adapts_lr and not isinstance(schedule, Constant):
        raise ValueError(f"schedule {type(schedule).__name__} would overwrite the rate that "
                         f"{type(optimizer).__name__} adapts in group['lr']: use schedule=constant")
    base_lrs = [group["lr"] for group in optimizer.param_groups]
    if tc.batch_size % ddp.world_size:
        raise ValueError(f"trainer.batch_size={tc.batch_size} (the global batch) must be divisible by the "
                         f"{ddp.world_size} DDP ranks")
    plan = Plan(data, tc.epochs, tc.batch_size, tc.drop_last, tc.max_steps)
    autocast = torch.autocast(device_type=ddp.device.type, dtype=torch.bfloat16, enabled=bool(tc.bf16))

    # resume
    start_step, elapsed, best, last_eval = 0, 0.0, {}, {}
    resumed = bool(tc.resume) and ckpt_path.exists()
    if resumed:
        refuse_unresumable(cfg.optimizer, ckpt_path)
        ck = checkpoint.load(ckpt_path, map_location=ddp.device)
        model.load_state_dict(ck["model"])
        optimizer.load_state_dict(ck["optimizer"])
        checkpoint.set_rng_state(ck["rng"])
        start_step, elapsed, best, last_eval = ck["step"], ck["elapsed"], ck["best"], ck["last_eval"]
    if start_step >= plan.total and resumed:
        start_step = plan.total
    averaged = has_eval_mode(optimizer)
    pass_loss = takes_loss(optimizer)
    if averaged:
        optimizer.train()

    raw_model = model
    if ddp.enabled:
        model = DistributedDataParallel(model, device_ids=[ddp.device] if ddp.device.type == "cuda" else None)
    if tc.compile:
        model = torch.compile(model)

    # records: rank 0 alone writes
    config = OmegaConf.to_container(cfg, resolve=True)
    metrics = tracker = sink = bar = None
    if ddp.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        metrics = MetricsLog(run_dir / "metrics.jsonl", resume_step=start_step if resumed else None)
        tracker = GainTrajectories(optimizer, named_params, samples=tc.gain_samples, seed=cfg.seed)
        if resumed:
            tracker.load(run_dir / "gains.npz", upto_step=start_step)
        if cfg.logger.kind == "wandb":
            from funnel.train.wandb_sink import WandbSink
            sink = WandbSink(run_dir, config, project=cfg.logger.project, group=cfg.logger.group,
                             name=cfg.logger.name, mode=cfg.logger.mode, tags=cfg.logger.tags)
        from tqdm.auto import tqdm
        bar = tqdm(total=plan.total, initial=start_step, desc=cfg.name, dynamic_ncols=True,
                   disable=not tc.progress_bar)

    def run_evals(step: int, phase_index: int) -> dict:
        record = {}
        if averaged:  # evaluate at Schedule-Free's averaged point, with BatchNorm statistics computed there
            batches = epoch_batches(len(data.phases[phase_index].train), tc.batch_size, tc.drop_last, cfg.seed,
                                    phase_index, 0)[: tc.bn_recompute_batches]
            recompute_batchnorm(raw_model, data.phases[phase_index].train, data.train_transform, batches, ddp,
                                tc.num_workers, autocast, dtype)
        for name, dataset in data.eval_sets.items():
            for key, value in evaluate(raw_model, dataset, data.eval_transform, tc.eval_batch_size, ddp,
                                       tc.num_workers, autocast, dtype).items():
                record[f"{name}/{key}"] = value
        current = data.phases[phase_index].current_eval
        for key in list(record):
            split, rest = key.split("/", 1)
            if current and rest.startswith(current + "/"):
                record[f"{split}/current/{rest[len(current) + 1:]}"] = record[key]
        for key, value in record.items():
            better = min if key.endswith("/loss") else max
            best[key] = better(best.get(key, value), value)
        return record

    def save_checkpoint(step: int) -> None:
        if ddp.is_main:
            checkpoint.save(ckpt_path, {
                "model": raw_model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                "position": list(plan.position(min(step, plan.total - 1))), "rng": checkpoint.rng_state(),
                "elapsed": elapsed + time.perf_counter() - session_start, "best": best, "last_eval": last_eval,
                "config": OmegaConf.to_yaml(cfg)})
            tracker.save(run_dir / "gains.npz")

    if not resumed and tc.eval_at_start:
        if averaged:
            optimizer.eval()
        last_eval = run_evals(0, 0)
        if averaged:
            optimizer.train()
        if ddp.is_main:
            metrics.write({"step": 0, "phase": data.phases[0].name, **last_eval})
            sink and sink.log(last_eval, step=0)

    loss_sum = torch.zeros((), device=ddp.device)
    first_bad = torch.full((), -1, dtype=torch.long, device=ddp.device)  # first step with a non-finite loss
    window_start, window_steps, eval_time = time.perf_counter(), 0, 0.0
    stream, stream_key = None, None
    diverged_step = None
    step = start_step
    while step < plan.total:
        phase_index, epoch, batch_index = plan.position(step)
        phase = data.phases[phase_index]
        if stream_key != (phase_index, epoch):
            batches = epoch_batches(len(phase.train), tc.batch_size, tc.drop_last, cfg.seed, phase_index, epoch)
            batches = batches[batch_index:]  # a resumed run starts mid-epoch
            stream = zip(batch_stream(phase.train, [shard(b, ddp.rank, ddp.world_size) for b in batches],
                                      ddp.device, tc.num_workers), (len(b) for b in batches))
            stream_key = (phase_index, epoch)
        (x, y), global_n = next(stream)
        x, y = x.to(ddp.device, non_blocking=True), y.to(ddp.device, non_blocking=True)
        if data.train_transform is not None:
            # augmentation randomness from (seed, step): a resumed run draws exactly the same crops
            gen = torch.Generator(device=ddp.device).manual_seed(hash((cfg.seed, step)) % (2**63))
            x = data.train_transform(x, gen)
        x = x.to(dtype)  # a no-op in fp32
        if not adapts_lr:
            factor = schedule(step, plan.total)
            for group, base in zip(optimizer.param_groups, base_lrs):
                group["lr"] = base * factor

        # The loss is the sum over this rank's samples divided by the global batch size, times the world size:
        # DDP's gradient average then equals the gradient of the global batch mean, even for uneven shards.
        with autocast:
            logits = model(x)
        loss = F.cross_entropy(logits.to(loss_dtype(dtype)), y, reduction="sum") * (ddp.world_size / global_n)
        loss.backward()
        if pass_loss:  # the global batch's mean loss, the same on every rank, as the gradient is
            optimizer.step(loss=distributed.all_reduce(loss.detach().clone()) / ddp.world_size)
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)

        loss = loss.detach()
        first_bad = torch.where((first_bad < 0) & ~torch.isfinite(loss), step + 1, first_bad)
        loss_sum += loss
        window_steps += 1
        step += 1
        if bar is not None:
            bar.update(1)

        log_now = step % tc.log_every == 0 or step == plan.total
        eval_now = (step == plan.total or plan.ends_phase(step - 1)
                    or (step % tc.eval_every == 0 if tc.eval_every else plan.ends_epoch(step - 1)))
        ckpt_now = step == plan.total or (tc.checkpoint_every and step % tc.checkpoint_every == 0)
        if not (log_now or eval_now or ckpt_now):
            continue

        # A sync point: from here on host values are needed. Stop before anything non-finite is evaluated,
        # logged or checkpointed.
        bad_step = int(distributed.all_reduce(first_bad.clone(), op="max"))
        if bad_step > 0:
            diverged_step = bad_step
            if ddp.is_main:
                metrics.write({"step": step, "diverged": True, "diverged_step": diverged_step})
                print(f"{run_dir}: non-finite loss at step {diverged_step}; the run is recorded as diverged")
            break

        if averaged and (eval_now or ckpt_now):
            optimizer.eval()  # evaluate and checkpoint the averaged point; a resumed run makes the same round trips
        record = {"step": step, "epoch": epoch + (batch_index + 1) / plan.per_epoch[phase_index],
                  "phase": phase.name, "time/elapsed_s": elapsed + time.perf_counter() - session_start}
        if log_now:
            mean_loss = distributed.all_reduce(loss_sum.clone()) / (ddp.world_size * window_steps)
            now = time.perf_counter()
            step_time = (now - window_start - eval_time) / window_steps
            record.update({"train/loss": mean_loss.item(), "time/step_s": step_time,
                           "time/samples_per_s": tc.batch_size / step_time})
            record.update(optimizer_stats(optimizer, named_params))
            loss_sum.zero_()
            window_start, window_steps, eval_time = now, 0, 0.0
            if ddp.is_main:
                tracker.record(step)
                if sink and tc.histogram_every and (step // tc.log_every) % tc.histogram_every == 0:
                    sink.log_histograms({f"gain/{n}": optimizer.state[p]["gain"] for n, p in named_params
                                         if "gain" in optimizer.state.get(p, {})}, step)
        if eval_now:
            t0 = time.perf_counter()
            last_eval = run_evals(step, phase_index)
            record.update(last_eval)
            eval_time += time.perf_counter() - t0
        if ddp.is_main:
            metrics.write(record)
            if sink:
                sink.log(record, step=step)
            if bar is not None:
                shown = {k: record[k] for k in ("train/loss", "test/current/top1", "test/top1") if k in record}
                bar.set_postfix({k.split("/", 1)[-1] if k != "train/loss" else "loss": f"{v:.4g}"
                                 for k, v in shown.items()}, refresh=False)
        if ckpt_now:
            save_checkpoint(step)
        if averaged and (eval_now or ckpt_now):
            optimizer.train()
        if step == KILL_AT_STEP:
            os.kill(os.getpid(), signal.SIGKILL)

    # the end: summary.json, and a check that all ranks hold the same model and optimizer state
    elapsed += time.perf_counter() - session_start
    digests = [state_digest(raw_model, optimizer)]
    if ddp.enabled:
        gathered = [None] * ddp.world_size
        torch.distributed.all_gather_object(gathered, digests[0])
        digests = gathered
    objective = None
    if ddp.is_main:
        bar.close()
        final = last_eval if diverged_step is None else {}
        if tc.objective:
            objective = final.get(tc.objective, float("nan"))
        status = "diverged" if diverged_step is not None else "finished"
        write_json(summary_path, {
            "status": status, "diverged": diverged_step is not None, "diverged_step": diverged_step,
            "steps": step, "total_steps": plan.total, "final": final, "best": best, "objective": objective,
            "phases": [{"name": p.name, "start_step": s} for p, s in zip(data.phases, plan.starts)],
            "wall_time_s": elapsed, "world_size": ddp.world_size, "device": str(ddp.device),
            "ranks_in_sync": len(set(digests)) == 1, "state_sha256": digests,
            "parameters": sum(p.numel() for p in raw_model.parameters()), "data": data.info,
            "optimizer": type(optimizer).__name__, "torch": torch.__version__, "git": git_state(SOURCE_DIR),
            "config": config})
        metrics.close()
        if sink:
            sink.run.summary.update({"status": status, "wall_time_s": elapsed})
            sink.finish()
        shown = ", ".join(f"{k}={v:.2f}" for k, v in final.items() if k.endswith("top1") and "/angle" not in k)
        print(f"{run_dir}: {status} after {step} steps in {elapsed:.1f}s" + (f"; {shown}" if shown else ""))
    return None if objective is None or math.isnan(objective) else objective
