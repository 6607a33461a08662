"""The training loop: `train(cfg, run_dir)` builds data, model, optimizer and schedule from a composed Hydra config,
trains (on one process or as one DDP rank), evaluates, checkpoints, and leaves metrics.jsonl, gains.npz and
summary.json in `run_dir`. Read `train` first: every piece it calls follows it, in the order it calls them.
"""
from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch.nn.parallel import DistributedDataParallel

from funnel.data.base import TaskData, epoch_batches, shard
from funnel.optim import optimizer_stats
from funnel.optim.registry import takes_loss
from funnel.train import checkpoint, distributed, signals
from funnel.train.console import run_log, say
from funnel.train.build import (build_model, build_optimizer, instantiate, loss_dtype, parameter_dtype,
                                seed_everything)
from funnel.train.lock import RunLock
from funnel.train.evaluation import evaluate, has_eval_mode, recompute_batchnorm
from funnel.train.plan import Plan, batch_stream
from funnel.train.records import (GainTrajectories, MetricsLog, ended_steps, git_state, hardware, read_metrics,
                                  read_summary, run_name, write_json)
from funnel.train.schedules import Constant
from funnel.train.settings import TrainerSettings

SOURCE_DIR = Path(__file__).resolve().parents[2]


@dataclass
class Run:
    """One run while it trains: what was built from the config, and where training stands (step, time, evaluations).
    Everything a checkpoint restores lives here, or in the model, the optimizer and the RNGs."""

    cfg: DictConfig
    run_dir: Path
    ddp: distributed.Distributed
    data: TaskData
    model: torch.nn.Module  # what the step calls: the model, or its DDP / compiled wrapper
    raw_model: torch.nn.Module  # its parameters, state_dict and evaluation
    optimizer: torch.optim.Optimizer
    schedule: Callable
    plan: Plan
    dtype: torch.dtype
    autocast: torch.autocast
    session_start: float
    base_lrs: list  # each group's configured lr, which the schedule multiplies
    adapts_lr: bool  # the optimizer owns group["lr"] (hypergradient descent): no schedule
    averaged: bool  # Schedule-Free: evaluate and checkpoint at the averaged point
    pass_loss: bool  # the optimizer's step takes the loss (MoMo)
    step: int = 0
    elapsed: float = 0.0  # seconds trained in earlier sessions of this run (before a resume)
    best: dict = field(default_factory=dict)
    last_eval: dict = field(default_factory=dict)
    resumed: bool = False
    resumes: list = field(default_factory=list)  # each resume: its step and the settings it changed
    first_loss: float | None = None  # the run's first train loss: the scale of trainer.diverge_factor
    saved_gains: dict | None = None  # the gain trajectories of the checkpoint resumed from
    saved_window: dict | None = None  # the logging window the checkpoint was written in (its steps' losses)
    saved_record: dict | None = None  # the steps of the metrics lines written up to the checkpoint
    checkpoint_step: int = 0  # the step of the newest checkpoint: where a restart resumes

    @property
    def tc(self) -> DictConfig:
        return self.cfg.trainer

    def seconds(self) -> float:
        return self.elapsed + time.perf_counter() - self.session_start


def train(cfg: DictConfig, run_dir: str | Path, after_step: Callable[[Run], None] | None = None) -> float | None:
    """Train as configured; returns `trainer.objective` from the final evaluation (for Hydra sweepers), if set.
    `after_step(run)` runs after each step's logging, evaluation and checkpoint (tests inject faults there)."""
    session_start = time.perf_counter()
    run_dir = Path(run_dir)
    TrainerSettings.check(cfg.trainer)  # before anything is written
    check_seed(cfg.seed)
    ddp = distributed.setup(cfg.trainer.device, cfg.trainer.ddp_timeout_s)
    main = ddp.is_main  # rank 0 alone writes
    with RunLock(run_dir) if main else contextlib.nullcontext(), run_log(run_dir) if main else contextlib.nullcontext():
        ended = ended_summary(run_dir, cfg, ddp)
        if ended is not None:  # the objective as configured now (a sweep may ask for another metric)
            return sweep_objective(ended["final"], cfg.trainer.objective, ended["status"])
        try:
            return train_locked(cfg, run_dir, ddp, session_start, after_step)
        except RuntimeError as err:
            if ddp.enabled and distributed.is_timeout(err):
                raise distributed.RanksTimedOut(ddp, cfg.trainer.ddp_timeout_s, err) from err
            raise


def train_locked(cfg: DictConfig, run_dir: Path, ddp, session_start: float, after_step) -> float | None:
    """`train`, holding the run directory, for a run that has not ended."""
    run = build_run(cfg, run_dir, ddp, session_start)
    resume(run)
    if not run.resumed and ddp.is_main:
        clear_earlier_run(run)
    wrap_model(run)
    records = Records.open(run) if ddp.is_main else None
    if not run.resumed and run.tc.eval_at_start:
        evaluate_at_start(run, records)
    window, batches = Window(run), Batches(run)
    diverged_step = None
    try:
        # One process: a first Ctrl-C or SIGTERM ends the step it came in, with a checkpoint there. Several ranks
        # may each get it at another step, and a checkpoint needs all of them: they stop at once.
        with signals.deferred(enabled=not ddp.enabled):
            while run.step < run.plan.total:
                x, y, global_n = batches.next(run.step)
                train_step(run, window, x, y, global_n)
                if records:
                    records.bar.update(1)
                due = due_now(run)
                if any(due):
                    diverged_step = first_divergence(run, window, records)
                    if diverged_step is not None:
                        break
                    report(run, window, records, *due)
                if after_step:
                    after_step(run)
                if signals.pending():
                    stop_here(run, window, records, signals.pending())
    except BaseException as err:
        if records:
            records.abort()
        if isinstance(err, KeyboardInterrupt):
            raise Interrupted(run.step, run.checkpoint_step, signals.signal_name(err)) from None
        raise
    return finish(run, records, diverged_step)


class Interrupted(signals.Stop):
    """Ctrl-C or SIGTERM once training started: where the run stood, the checkpoint a restart resumes from, and
    whether the run had already ended (its summary written) when the signal came."""

    def __init__(self, step: int, checkpoint_step: int, signal: str = "SIGINT", ended: str | None = None):
        super().__init__(signal)
        self.args = (f"{signal} at step {step}; the last checkpoint is at step {checkpoint_step}",)
        self.step, self.checkpoint_step, self.ended = step, checkpoint_step, ended


def check_seed(seed) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed={seed!r} must be an integer (it seeds the model's init, the data order and the "
                         "augmentation)")


def ended_summary(run_dir: Path, cfg: DictConfig, ddp) -> dict | None:
    """The summary of a run that already ended (finished or diverged) under this config: a restarted sweep skips
    it. A ValueError, in one line, for a run that ended under another config (the command changed, or a config file
    it was composed from), and for a folder whose summary and metrics disagree: neither is this command's run."""
    path = run_dir / "summary.json"
    if not (cfg.trainer.resume and path.exists()):
        return None
    summary = read_summary(path)
    status = summary["status"]
    changes = checkpoint.training_differences(summary.get("config") or {}, OmegaConf.to_container(cfg, resolve=True))
    if changes:
        raise ValueError(f"{run_dir} holds a run that {status} under another config ({checkpoint.listed(changes)}). "
                         "Run the command that trained it; or give this one another folder (hydra.run.dir=...); or "
                         "add trainer.resume=false to train it again here, replacing it.")
    disagree = ended_steps(summary, read_metrics(run_dir / "metrics.jsonl"))
    if disagree:
        expected, last = disagree
        where = "is missing or empty" if last is None else f"ends at step {last}"
        raise ValueError(f"{run_dir}: summary.json says the run {status} at step {expected}, but its metrics.jsonl "
                         f"{where}: the folder's files disagree, so it is not taken as {status}. Add "
                         "trainer.resume=false to train it again here, replacing it.")
    if ddp.is_main:
        say(f"{run_dir}: already {status} under this config (trainer.resume=false trains it again)")
    return summary


def clear_earlier_run(run: Run) -> None:
    """A run that starts at step 0 in a folder where another ran (trainer.resume=false, or one stopped before its
    first checkpoint): the earlier run's summary, checkpoints and gains go first, so that a stop midway never leaves
    an old summary or checkpoint beside the new run's metrics (a folder that says "finished" for a run it does not
    hold). run.log keeps the earlier run's lines."""
    earlier = [run.run_dir / name for name in ("summary.json", checkpoint.LAST, checkpoint.PREVIOUS, "gains.npz")]
    earlier = [path for path in earlier if path.exists()]
    if not earlier:
        return
    why = "trainer.resume=false" if not run.tc.resume else "no checkpoint to resume from"
    say(f"{run.run_dir}: {why}: this run starts at step 0 and replaces the earlier one here (deleted: "
        f"{', '.join(str(p.relative_to(run.run_dir)) for p in earlier)})")
    for path in earlier:
        path.unlink()


def build_run(cfg: DictConfig, run_dir: Path, ddp, session_start: float) -> Run:
    """Data, model, optimizer, schedule and the step plan, each checked against the others."""
    tc = cfg.trainer
    dtype = parameter_dtype(tc.dtype)
    if tc.bf16 and dtype != torch.float32:
        raise ValueError(f"trainer.bf16=true autocasts float32 parameters; with trainer.dtype={tc.dtype} it would "
                         "do nothing: set one of the two")
    seed_everything(cfg.seed)
    if tc.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    data: TaskData = instantiate(cfg.dataset)
    if ddp.device.type == "cuda":
        data = data.to(ddp.device)  # small datasets live on the GPU: no per-batch host-to-device copies
    model = build_model(cfg.model, data).to(ddp.device, dtype)
    optimizer = build_optimizer(cfg.optimizer, model.parameters())
    schedule = instantiate(cfg.schedule)
    adapts_lr = getattr(optimizer, "adapts_lr", False)
    if adapts_lr and not isinstance(schedule, Constant):
        raise ValueError(f"schedule {type(schedule).__name__} would overwrite the rate that "
                         f"{type(optimizer).__name__} adapts in group['lr']: use schedule=constant")
    if tc.batch_size % ddp.world_size:
        raise ValueError(f"trainer.batch_size={tc.batch_size} (the global batch) must be divisible by the "
                         f"{ddp.world_size} DDP ranks")
    plan = Plan(data, tc.epochs, tc.batch_size, tc.drop_last, tc.max_steps)
    autocast = torch.autocast(device_type=ddp.device.type, dtype=torch.bfloat16, enabled=bool(tc.bf16))
    return Run(cfg, run_dir, ddp, data, model, model, optimizer, schedule, plan, dtype, autocast, session_start,
               base_lrs=[group["lr"] for group in optimizer.param_groups], adapts_lr=adapts_lr,
               averaged=has_eval_mode(optimizer), pass_loss=takes_loss(optimizer))


def resume(run: Run) -> None:
    """Continue from the run directory's checkpoint, if resuming is on and there is one: model, optimizer, RNGs,
    step, time and evaluations as they were when it was written."""
    found = checkpoint.load_latest(run.run_dir, map_location=run.ddp.device) if run.tc.resume else None
    run.resumed = found is not None
    if run.resumed:
        ck, path = found
        checkpoint.refuse_unresumable(run.cfg.optimizer, path)
        changes = checkpoint.check_resume_config(ck["config"], run.cfg, path)
        entry = {"step": ck["step"], "changed": {k: list(v) for k, v in changes.items()}}
        saved_world = ck.get("world_size", run.ddp.world_size)
        if saved_world != run.ddp.world_size:
            entry["world_size"] = [saved_world, run.ddp.world_size]
        run.resumes = [*ck.get("resumes", []), entry]
        run.raw_model.load_state_dict(ck["model"])
        run.optimizer.load_state_dict(ck["optimizer"])
        checkpoint.set_rng_state(ck["rng"])
        run.step = run.checkpoint_step = min(ck["step"], run.plan.total)
        run.elapsed, run.best, run.last_eval = ck["elapsed"], ck["best"], ck["last_eval"]
        run.first_loss = ck.get("first_loss")
        run.saved_gains, run.saved_window, run.saved_record = ck.get("gains"), ck.get("window"), ck.get("record")
        if run.ddp.is_main:
            say(resume_line(run, path, ck.get("stopped_by"), saved_world))
    if run.averaged:
        run.optimizer.train()


def resume_line(run: Run, path: Path, stopped_by: str | None, saved_world: int) -> str:
    """Where a resumed run goes on from, and why from there."""
    why = (f"written when {stopped_by} stopped the run there" if stopped_by
           else "its last checkpoint; whatever stopped the run came later")
    line = f"{run.run_dir}: resuming at step {run.step} of {run.plan.total} from {path.name} ({why})"
    if saved_world != run.ddp.world_size:
        line += (f"; it trained as {saved_world} process(es) and goes on as {run.ddp.world_size}: the batches split "
                 "differently, so it differs from an uninterrupted run by rounding (summary.json resumes records "
                 "the change)")
    return line


def stop_here(run: Run, window: Window, records: Records | None, signal_name: str) -> None:
    """A signal came during the step just taken: checkpoint this step (unless it has one, or a checkpoint would
    not resume to the same state: Schedule-Free's checkpoints are taken at its averaged point, which an uninterrupted
    run does not visit here), then stop."""
    if run.checkpoint_step != run.step and not run.averaged:
        window.settle()
        save_checkpoint(run, window, records, stopped_by=signal_name)
    raise signals.Stop(signal_name)


def wrap_model(run: Run) -> None:
    """DDP over the ranks, and torch.compile if configured; the raw model keeps the parameters."""
    if run.ddp.enabled:
        run.model = DistributedDataParallel(run.model, device_ids=[run.ddp.device]
                                            if run.ddp.device.type == "cuda" else None)
    if run.tc.compile:
        run.model = torch.compile(run.model)


@dataclass
class Records:
    """What rank 0 writes while training: metrics.jsonl, the gain trajectories, W&B, the progress bar."""

    metrics: MetricsLog
    gains: GainTrajectories
    sink: object | None
    bar: object
    lines: bool = False  # progress as plain lines (no terminal for the bar)
    name: str = ""
    total: int = 0
    last_line: int = 0

    @classmethod
    def open(cls, run: Run) -> Records:
        run.run_dir.mkdir(parents=True, exist_ok=True)
        metrics = MetricsLog(run.run_dir / "metrics.jsonl", resume_step=run.step if run.resumed else None,
                             saved=run.saved_record)
        gains = GainTrajectories(run.optimizer, list(run.raw_model.named_parameters()), samples=run.tc.gain_samples,
                                 seed=run.cfg.seed)
        if run.resumed:  # from the checkpoint; from gains.npz for a checkpoint written before they were in it
            gains.load(run.saved_gains if run.saved_gains is not None else run.run_dir / "gains.npz", run.step)
        sink = None
        if run.cfg.logger.kind == "wandb":
            from funnel.train.wandb_sink import WandbSink

            sink = WandbSink.from_config(run.cfg, run.run_dir, resumed=run.resumed)
        from tqdm.auto import tqdm

        name = run_name(run.cfg)
        # disable=None: tqdm turns itself off without a terminal (SLURM logs, W&B's output.log), where a line at
        # the evaluations says how far the run is instead
        bar = tqdm(total=run.plan.total, initial=run.step, desc=name, dynamic_ncols=True,
                   disable=None if run.tc.progress_bar else True)
        return cls(metrics, gains, sink, bar, lines=run.tc.progress_bar and bar.disable, name=name,
                   total=run.plan.total)

    def abort(self) -> None:
        """A run stopped by an exception: the bar closed, the W&B run marked failed (a resume continues it)."""
        self.bar.close()
        if self.sink:
            self.sink.run.finish(exit_code=1)

    def write(self, record: dict) -> None:
        self.metrics.write(record)
        if self.sink:
            self.sink.log(record, step=record["step"])
        shown = {k: record[k] for k in ("train/loss", "test/current/top1", "test/top1") if k in record}
        postfix = {k.split("/", 1)[-1] if k != "train/loss" else "loss": f"{v:.4g}" for k, v in shown.items()}
        self.bar.set_postfix(postfix, refresh=False)
        step = record["step"]
        due = step - self.last_line >= self.total / 20 or step == self.total
        if self.lines and due and any(k.endswith("/top1") for k in record):  # evaluated
            self.last_line = step  # about 20 lines a run, at evaluations
            say(f"{self.name}: step {step}/{self.total} " + " ".join(f"{k}={v}" for k, v in postfix.items()))


def evaluate_at_start(run: Run, records: Records | None) -> None:
    if run.averaged:
        run.optimizer.eval()
    run.last_eval = evaluate_all(run, 0)
    if run.averaged:
        run.optimizer.train()
    if records:
        records.metrics.write({"step": 0, "phase": run.data.phases[0].name, **run.last_eval})
        if records.sink:
            records.sink.log(run.last_eval, step=0)


class Window:
    """Between two log points: the summed loss, the first step whose loss diverged, and the time spent, kept on the
    device so that a step never waits for the host. A loss diverges when it is not finite, or above
    `trainer.diverge_factor` times the run's first loss (a blow-up that stays finite)."""

    def __init__(self, run: Run):
        self.run = run
        device = run.ddp.device
        self.loss_sum = torch.zeros((), device=device)
        self.first_bad = torch.full((), -1, dtype=torch.long, device=device)
        self.first = None if run.first_loss is None else torch.tensor(run.first_loss, device=device)
        self.start, self.steps, self.eval_time = time.perf_counter(), 0, 0.0
        saved = run.saved_window
        if saved:  # a resume inside a window: its first steps' losses count, as in an uninterrupted run
            sums, ranks = saved["loss_sums"], run.ddp.world_size
            if len(sums) == ranks:
                self.loss_sum = sums[run.ddp.rank].to(device)
            else:  # another world size: the same window mean, all of it on rank 0
                self.loss_sum = (sums.sum() / len(sums) * ranks if run.ddp.is_main else sums.sum() * 0).to(device)
            self.first_bad.fill_(saved["first_bad"])
            self.steps = saved["steps"]
            self.start -= saved["seconds"]

    def state(self) -> dict:
        """The window so far, for a checkpoint: every rank's loss sum (a collective: all ranks call it)."""
        sums = self.loss_sum.detach().reshape(1)
        if self.run.ddp.enabled:
            gathered = [torch.empty_like(sums) for _ in range(self.run.ddp.world_size)]
            torch.distributed.all_gather(gathered, sums)
            sums = torch.cat(gathered)
        return {"loss_sums": sums.cpu(), "steps": self.steps, "first_bad": int(self.first_bad),
                "seconds": time.perf_counter() - self.start - self.eval_time}

    def add(self, loss: torch.Tensor, step: int) -> None:
        """The loss of step `step` (0-based)."""
        if self.first is None:
            self.first = loss.clone()
        bad = ~torch.isfinite(loss)
        if self.run.tc.diverge_factor is not None:
            bad |= loss > self.run.tc.diverge_factor * self.first.abs().clamp_min(1e-12)
        self.first_bad = torch.where((self.first_bad < 0) & bad, step + 1, self.first_bad)
        self.loss_sum += loss
        self.steps += 1

    def settle(self) -> None:
        """At a sync point: the run's first loss as a number, for checkpoints (a resumed run keeps the same limit)."""
        if self.run.first_loss is None and self.first is not None:
            self.run.first_loss = self.first.item()

    def flush(self, run: Run) -> dict:
        """The window's mean train loss over all ranks and its time per step (evaluation excluded); starts the next."""
        mean_loss = distributed.all_reduce(self.loss_sum.clone()) / (run.ddp.world_size * self.steps)
        now = time.perf_counter()
        step_time = (now - self.start - self.eval_time) / self.steps
        self.loss_sum.zero_()
        self.start, self.steps, self.eval_time = now, 0, 0.0
        return {"train/loss": mean_loss.item(), "time/step_s": step_time,
                "time/samples_per_s": run.tc.batch_size / step_time}


class Batches:
    """This rank's training batches in the plan's order, for the epoch a step falls in; a resumed run starts
    mid-epoch at the checkpoint's batch."""

    def __init__(self, run: Run):
        self.run, self.key, self.stream = run, None, None

    def next(self, step: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        """(x, y) of this rank's share of the global batch of `step`, and the global batch's size."""
        run, tc = self.run, self.run.tc
        phase_index, epoch, batch_index = run.plan.position(step)
        if self.key != (phase_index, epoch):
            phase = run.data.phases[phase_index]
            batches = epoch_batches(len(phase.train), tc.batch_size, tc.drop_last, run.cfg.seed, phase_index, epoch)
            batches = batches[batch_index:]
            shards = [shard(b, run.ddp.rank, run.ddp.world_size) for b in batches]
            self.stream = zip(batch_stream(phase.train, shards, run.ddp.device, tc.num_workers),
                              (len(b) for b in batches))
            self.key = (phase_index, epoch)
        (x, y), global_n = next(self.stream)
        return x, y, global_n


def train_step(run: Run, window: Window, x: torch.Tensor, y: torch.Tensor, global_n: int) -> None:
    """One optimizer step on one batch: augmentation, the scheduled lr, forward, backward, step."""
    device = run.ddp.device
    x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
    if run.data.train_transform is not None:
        # augmentation randomness from (seed, step): a resumed run draws exactly the same crops
        gen = torch.Generator(device=device).manual_seed(hash((run.cfg.seed, run.step)) % (2**63))
        x = run.data.train_transform(x, gen)
    x = x.to(run.dtype)  # a no-op in fp32
    if not run.adapts_lr:
        factor = run.schedule(run.step, run.plan.total)
        for group, base in zip(run.optimizer.param_groups, run.base_lrs):
            group["lr"] = base * factor
    # The loss is the sum over this rank's samples divided by the global batch size, times the world size: DDP's
    # gradient average then equals the gradient of the global batch mean, even for uneven shards.
    with run.autocast:
        logits = run.model(x)
    loss = F.cross_entropy(logits.to(loss_dtype(run.dtype)), y, reduction="sum") * (run.ddp.world_size / global_n)
    loss.backward()
    if run.pass_loss:  # the global batch's mean loss, the same on every rank, as the gradient is
        run.optimizer.step(loss=distributed.all_reduce(loss.detach().clone()) / run.ddp.world_size)
    else:
        run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    window.add(loss.detach(), run.step)
    run.step += 1


def due_now(run: Run) -> tuple[bool, bool, bool]:
    """Whether the step just taken ends with a log record, an evaluation, a checkpoint."""
    step, tc, plan = run.step, run.tc, run.plan
    log = step % tc.log_every == 0 or step == plan.total
    evaluate_ = (step == plan.total or plan.ends_phase(step - 1)
                 or (step % tc.eval_every == 0 if tc.eval_every else plan.ends_epoch(step - 1)))
    ckpt = step == plan.total or bool(tc.checkpoint_every and step % tc.checkpoint_every == 0)
    return log, evaluate_, ckpt


def first_divergence(run: Run, window: Window, records: Records | None) -> int | None:
    """The first step (1-based) whose loss diverged on any rank, recorded; None if there was none. A sync point:
    nothing diverged is evaluated, logged or checkpointed after it."""
    bad_step = int(distributed.all_reduce(window.first_bad.clone(), op="max"))
    if bad_step <= 0:
        return None
    if records:
        records.metrics.write({"step": run.step, "diverged": True, "diverged_step": bad_step})
        say(f"{run.run_dir}: the loss diverged at step {bad_step} (not finite, or above trainer.diverge_factor="
              f"{run.tc.diverge_factor} times the first logged loss); the run is recorded as diverged")
    return bad_step


def report(run: Run, window: Window, records: Records | None, log: bool, evaluate_: bool, ckpt: bool) -> None:
    """The record of the step just taken (train loss and optimizer statistics, evaluations), then the checkpoint."""
    averaged_point = run.averaged and (evaluate_ or ckpt)
    if averaged_point:
        run.optimizer.eval()  # evaluate and checkpoint the averaged point; a resumed run makes the same round trips
    phase_index, epoch, batch_index = run.plan.position(run.step - 1)
    record = {"step": run.step, "epoch": epoch + (batch_index + 1) / run.plan.per_epoch[phase_index],
              "phase": run.data.phases[phase_index].name, "time/elapsed_s": run.seconds()}
    if log:
        record.update(window.flush(run))
        named = list(run.raw_model.named_parameters())
        record.update(optimizer_stats(run.optimizer, named))
        if records:
            log_gains(run, records, named)
    if evaluate_:
        t0 = time.perf_counter()
        run.last_eval = evaluate_all(run, phase_index)
        record.update(run.last_eval)
        window.eval_time += time.perf_counter() - t0
    if records:
        records.write(record)
    if ckpt:
        window.settle()
        save_checkpoint(run, window, records)
    if averaged_point:
        run.optimizer.train()


def log_gains(run: Run, records: Records, named: list) -> None:
    """The sampled gain trajectories, and every so often a histogram of each layer's gains to W&B."""
    records.gains.record(run.step)
    every = run.tc.histogram_every
    if records.sink and every and (run.step // run.tc.log_every) % every == 0:
        state = run.optimizer.state
        records.sink.log_histograms({f"gain/{n}": state[p]["gain"] for n, p in named
                                     if "gain" in state.get(p, {})}, run.step)


def evaluate_all(run: Run, phase_index: int) -> dict:
    """Every evaluation set, each metric also under "current/" for the current phase's set; updates the bests."""
    tc, data = run.tc, run.data
    if run.averaged:  # evaluate at Schedule-Free's averaged point, with BatchNorm statistics computed there
        batches = epoch_batches(len(data.phases[phase_index].train), tc.batch_size, tc.drop_last, run.cfg.seed,
                                phase_index, 0)[: tc.bn_recompute_batches]
        recompute_batchnorm(run.raw_model, data.phases[phase_index].train, data.train_transform, batches, run.ddp,
                            tc.num_workers, run.autocast, run.dtype)
    record = {}
    for name, dataset in data.eval_sets.items():
        for key, value in evaluate(run.raw_model, dataset, data.eval_transform, tc.eval_batch_size, run.ddp,
                                   tc.num_workers, run.autocast, run.dtype).items():
            record[f"{name}/{key}"] = value
    current = data.phases[phase_index].current_eval
    for key in list(record):
        split, rest = key.split("/", 1)
        if current and rest.startswith(current + "/"):
            record[f"{split}/current/{rest[len(current) + 1:]}"] = record[key]
    for key, value in record.items():
        better = min if key.endswith("/loss") else max
        run.best[key] = better(run.best.get(key, value), value)
    return record


def save_checkpoint(run: Run, window: Window, records: Records | None, stopped_by: str | None = None) -> None:
    """Everything a resume needs to go on as if uninterrupted, written by rank 0; `stopped_by` names the signal a
    checkpoint was written for outside the schedule."""
    run.checkpoint_step = run.step
    window_state = window.state()
    if not records:  # rank 0 alone writes
        return
    checkpoint.save(run.run_dir / checkpoint.LAST, {
        "model": run.raw_model.state_dict(), "optimizer": run.optimizer.state_dict(), "step": run.step,
        "position": list(run.plan.position(min(run.step, run.plan.total - 1))), "rng": checkpoint.rng_state(),
        "elapsed": run.seconds(), "best": run.best, "last_eval": run.last_eval, "config": OmegaConf.to_yaml(run.cfg),
        "resumes": run.resumes, "first_loss": run.first_loss, "gains": records.gains.state_dict(),
        "window": window_state, "record": records.metrics.state_dict(), "world_size": run.ddp.world_size,
        "stopped_by": stopped_by})
    records.gains.save(run.run_dir / "gains.npz")  # a copy for readers; the checkpoint holds the committed one


def finish(run: Run, records: Records | None, diverged_step: int | None) -> float | None:
    """summary.json, with a check that all ranks hold the same model and optimizer state; the objective."""
    elapsed = run.seconds()
    digests = [distributed.state_digest(run.raw_model, run.optimizer)]
    if run.ddp.enabled:
        gathered = [None] * run.ddp.world_size
        torch.distributed.all_gather_object(gathered, digests[0])
        digests = gathered
    if not records:
        return None
    records.bar.close()
    final = run.last_eval if diverged_step is None else {}
    status = "diverged" if diverged_step is not None else "finished"
    objective = final.get(run.tc.objective) if run.tc.objective else None
    data = run.data
    summary = {
        "status": status, "diverged": diverged_step is not None, "diverged_step": diverged_step,
        "steps": run.step, "total_steps": run.plan.total, "final": final, "best": run.best, "objective": objective,
        "phases": [{"name": p.name, "start_step": s} for p, s in zip(data.phases, run.plan.starts)],
        "wall_time_s": elapsed, "resumes": run.resumes, "world_size": run.ddp.world_size,
        "device": str(run.ddp.device), "hardware": hardware(run.ddp.device, run.ddp.world_size),
        "ranks_in_sync": len(set(digests)) == 1, "state_sha256": digests,
        "parameters": sum(p.numel() for p in run.raw_model.parameters()), "data": data.info,
        "optimizer": type(run.optimizer).__name__, "torch": torch.__version__, "git": git_state(SOURCE_DIR),
        "record": records.metrics.summary(), "config": OmegaConf.to_container(run.cfg, resolve=True)}
    write_json(run.run_dir / "summary.json", summary)
    try:
        records.metrics.close()
        if records.sink:
            records.sink.finish(summary)
        shown = ", ".join(f"{k}={v:.2f}" for k, v in final.items() if k.endswith("top1") and "/angle" not in k)
        say(f"{run.run_dir}: {status} after {run.step} steps in {elapsed:.1f}s" + (f"; {shown}" if shown else ""))
    except KeyboardInterrupt as err:  # the run is whole on disk: the stop line must say so
        raise Interrupted(run.step, run.checkpoint_step, signals.signal_name(err), ended=status) from None
    return sweep_objective(final, run.tc.objective, status)  # after the summary: a bad key loses no run


def sweep_objective(final: dict, key: str | None, status: str) -> float | None:
    """`trainer.objective` from a run's final evaluation, for Hydra's sweepers (Optuna); None where there is no
    number (a diverged run: the sweeper records a failed trial). A key the run does not have is an error that names
    the ones it has, not a silent NaN in every trial."""
    if not key:
        return None
    if status == "finished" and key not in final:
        raise ValueError(f"trainer.objective={key} is not a metric of this run; it has: {', '.join(sorted(final))}")
    value = final.get(key)
    return None if value is None or math.isnan(value) else value
