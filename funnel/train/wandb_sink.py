"""Weights & Biases mirror of metrics.jsonl. Offline unless the user asks for online; an online run that cannot
start (no key, no network, the server down) falls back to offline within seconds, with a warning. Offline runs
upload later with `wandb sync <run dir>/wandb/offline-run-*`. Imported only when logger=wandb.

What a run shows in W&B:
- every key against `trainer/step` (define_metric); accuracies keep their max, losses their min, in the summary;
  each layer's gain statistics (gain/<layer>/{mean,min,max,p10,p50,p90}) stay in the history but out of the
  automatic panels (a ResNet-50 has about a thousand), summed up live as gains/{p10,p50,p90}: each layer's
  quantile, averaged over the layers;
- at the end, three charts from metrics.jsonl: charts/scale_per_layer (every layer's scale on one chart),
  charts/gain_quantiles (gains/p10, p50, p90) and charts/accuracy (each evaluation set's top-1, a vertical line
  where each phase starts); and the summary: best/* and final/* from summary.json, status, diverged_step, git/*;
- name "<label> seed=<seed>", group the sweep (else the experiment), job_type the arm (else the optimizer), tags
  the experiment, dataset, model and optimizer; logger.name/group/job_type win, logger.tags are added.
"""
from __future__ import annotations

import hashlib
import math
import os
import re
import secrets
from pathlib import Path

import torch

from funnel.train.console import say
from funnel.train.records import read_metrics, run_name

MODES = ("offline", "online", "disabled")
ONLINE_TIMEOUT_S = 10  # an online run that cannot reach its server falls back to offline after this, not ~100 s
STEP = "trainer/step"  # the x axis of every logged key
STEP_AXIS = ("train/*", "val/*", "test/*", "lr/*", "d/*", "scale/*", "gain/*", "gains/*", "time/*", "epoch")
RUN_ID_FILE = "wandb_id"  # in the run directory: a resume continues this W&B run; a new run writes a new one
GAIN_STAT = re.compile(r"gain/(.+)/(mean|min|max|p\d\d)")
QUANTILES = ("p10", "p50", "p90")
CHART_ROWS = 10_000  # wandb.Table's limit for a logged table: longer runs are thinned to fit


# ------------------------------------------------------------------------------------------------ run identity
def target_name(node) -> str:
    """The last part of a config node's _target_: "funnel.models.resnet50" -> "resnet50"."""
    return str(node.get("_target_", "?")).rsplit(".", 1)[-1]


def optimizer_name(optimizer) -> str:
    """"Funnel(adagrad)", "SGD", "prodigy" (the registry name of an optimizer built through the registry)."""
    if optimizer.get("name"):
        return str(optimizer.name)
    inner = optimizer.get("inner")
    return f"{target_name(optimizer)}({inner})" if isinstance(inner, str) else target_name(optimizer)


def dataset_tags(dataset) -> list[str]:
    name = dataset.get("name") or target_name(dataset).removeprefix("build_")
    base = dataset.get("base")
    return [str(name)] + ([str(base)] if base and base != name else [])


def identity(cfg) -> dict:
    """wandb.init's name, group, job_type and tags for a composed config; logger.* set by the user win."""
    launch = cfg.get("launch") or {}  # filled in by funnel.cli; empty when train() is called directly
    logger = cfg.logger
    derived = [cfg.name, *dataset_tags(cfg.dataset), target_name(cfg.model), optimizer_name(cfg.optimizer)]
    tags = []
    for tag in [*(logger.get("tags") or []), *derived]:
        tag = str(tag)[:64]  # W&B's limit
        if tag not in tags:
            tags.append(tag)
    return {"name": logger.get("name") or run_name(cfg),
            "group": logger.get("group") or launch.get("sweep") or cfg.name,
            "job_type": logger.get("job_type") or launch.get("arm") or optimizer_name(cfg.optimizer),
            "tags": tags}


def run_id(run_dir: Path, resumed: bool) -> str:
    """The W&B run id: the one kept in the run directory when resuming from its checkpoint, else a new one (a run
    directory deleted and created again must not continue, or collide with, the old run on `wandb sync`)."""
    path = run_dir / RUN_ID_FILE
    if resumed and path.exists():
        stored = path.read_text().strip()
        if not re.fullmatch(r"[a-z0-9]{1,64}", stored):  # W&B makes a folder of the id: a stored path is refused
            raise ValueError(f"{path} holds {stored[:80]!r}, which is not a W&B run id (lowercase letters and digits): "
                             "delete the file to log the resumed run as a new W&B run")
        return stored
    if resumed and (run_dir / "wandb").is_dir():  # a checkpoint from before wandb_id: its id was the path's hash
        return hashlib.sha1(str(run_dir.resolve()).encode()).hexdigest()[:16]
    new = secrets.token_hex(8)  # W&B ids are lowercase letters and digits (wandb.util.generate_id moved in 0.2x)
    run_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(new + "\n")
    return new


# ------------------------------------------------------------------------------------------------ end-of-run charts
def series(records: list[dict], key: str) -> tuple[list, list]:
    """(steps, values) of `key`, finite values only."""
    points = [(r["step"], r[key]) for r in records
              if isinstance(r.get(key), (int, float)) and math.isfinite(r[key]) and "step" in r]
    return [s for s, _ in points], [v for _, v in points]


def thin(xs: list, ys: list, keep: int) -> tuple[list, list]:
    """At most `keep` evenly spaced points, the last one included."""
    if len(xs) <= keep:
        return xs, ys
    index = sorted({round(i * (len(xs) - 1) / (keep - 1)) for i in range(keep)})
    return [xs[i] for i in index], [ys[i] for i in index]


def line_chart(lines: dict[str, tuple[list, list]], title: str):
    """A wandb line_series chart of {key: (xs, ys)}, each line thinned so that the table fits, or None if empty."""
    import wandb

    lines = {k: v for k, v in lines.items() if v[0]}
    if not lines:
        return None
    keep = max(2, CHART_ROWS // len(lines))
    lines = {k: thin(*v, keep) for k, v in lines.items()}
    return wandb.plot.line_series(xs=[v[0] for v in lines.values()], ys=[v[1] for v in lines.values()],
                                  keys=list(lines), title=title, xname="step")


def gain_quantiles(record: dict) -> dict:
    """gains/{p10,p50,p90}: each layer's gain quantile, averaged over the layers."""
    by_quantile: dict[str, list[float]] = {}
    for key, value in record.items():
        match = GAIN_STAT.fullmatch(key)
        if match and match.group(2) in QUANTILES and isinstance(value, (int, float)):
            by_quantile.setdefault(match.group(2), []).append(value)
    return {f"gains/{q}": sum(v) / len(v) for q, v in by_quantile.items()}


def accuracy_keys(records: list[dict]) -> list[str]:
    """Each evaluation set's top-1 of the test split (else val): "current/" repeats one of them and is left out
    unless it is all there is."""
    keys = sorted({k for r in records for k in r if k.endswith("/top1")})
    for split in ("test", "val"):
        mine = [k for k in keys if k.startswith(split + "/")]
        if mine:
            return [k for k in mine if "/current/" not in k] or mine
    return keys


def charts(records: list[dict], phases: list[dict]) -> dict:
    """The end-of-run charts (see the module docstring) that the records have data for."""
    layers = sorted({k[len("scale/"):] for r in records for k in r if k.startswith("scale/")})
    scale = line_chart({layer: series(records, f"scale/{layer}") for layer in layers}, "Scale per layer")
    with_gains = [{"step": r["step"], **gain_quantiles(r)} for r in records if "step" in r]
    gains = line_chart({q: series(with_gains, f"gains/{q}") for q in QUANTILES},
                       "Gain quantiles (mean over layers)")
    lines = {key: series(records, key) for key in accuracy_keys(records)}
    values = [v for _, ys in lines.values() for v in ys]
    last = max((xs[-1] for xs, _ in lines.values() if xs), default=0)
    if values:  # a phase start as a vertical line across the plotted range
        for phase in phases:
            if 0 < phase["start_step"] <= last:
                lines[f"{phase['name']} starts"] = ([phase["start_step"]] * 2, [min(values), max(values)])
    accuracy = line_chart(lines, "Top-1 accuracy (%) and phase starts")
    made = {"charts/scale_per_layer": scale, "charts/gain_quantiles": gains, "charts/accuracy": accuracy}
    return {k: v for k, v in made.items() if v is not None}


def summary_fields(summary: dict) -> dict:
    """What summary.json adds to the W&B summary."""
    git = summary.get("git") or {}
    return {"status": summary.get("status"), "diverged_step": summary.get("diverged_step"),
            "steps": summary.get("steps"), "wall_time_s": summary.get("wall_time_s"),
            "objective": summary.get("objective"), "git/commit": git.get("commit"), "git/dirty": git.get("dirty"),
            **{f"best/{k}": v for k, v in (summary.get("best") or {}).items()},
            **{f"final/{k}": v for k, v in (summary.get("final") or {}).items()}}


# ------------------------------------------------------------------------------------------------ the sink
class WandbSink:
    def __init__(self, run_dir: str | Path, config: dict, project: str = "funnel", group: str | None = None,
                 name: str | None = None, mode: str = "offline", tags=(), job_type: str | None = None,
                 resumed: bool = False):
        mode = os.environ.get("WANDB_MODE", mode)  # the environment wins, as in wandb itself
        if mode not in MODES:
            raise ValueError(f"Unknown logger.mode {mode!r}; valid: {', '.join(MODES)}")
        import wandb

        self._wandb = wandb
        self.run_dir = run_dir = Path(run_dir).resolve()
        self.last_step = 0
        self._seen: set[str] = set()
        if wandb.run is not None:  # left active by a run that raised in this process: it failed (else init returns it)
            wandb.run.finish(exit_code=1)
        init = dict(project=project, group=group, name=name or run_dir.name, job_type=job_type, dir=str(run_dir),
                    config=config, id=run_id(run_dir, resumed), resume="allow", tags=list(tags))
        try:
            self.run = wandb.init(mode=mode, settings=wandb.Settings(silent=True, init_timeout=ONLINE_TIMEOUT_S),
                                  **init)
        except Exception as err:  # wandb raises several kinds for no key, no network, a server that is down
            if mode != "online":
                raise
            wandb.teardown()
            reason = (str(err).splitlines() or [""])[0][:200]
            say(f"W&B online failed ({type(err).__name__}: {reason}); logging offline instead. Upload later with: "
                  f"wandb sync {run_dir}/wandb/offline-run-*")
            self.run = wandb.init(mode="offline", settings=wandb.Settings(silent=True), **init)
        self.run.define_metric(STEP, hidden=True)
        for pattern in STEP_AXIS:
            self.run.define_metric(pattern, step_metric=STEP)

    @classmethod
    def from_config(cls, cfg, run_dir: str | Path, resumed: bool) -> WandbSink:
        from omegaconf import OmegaConf

        lc = cfg.logger
        return cls(run_dir, OmegaConf.to_container(cfg, resolve=True), project=lc.project, mode=lc.mode,
                   resumed=resumed, **identity(cfg))

    def _define_new(self, keys) -> None:
        """Per key, once: accuracies keep their max and losses their min in the summary; per-layer gain statistics
        stay out of the automatic panels (glob patterns match prefixes only, so these are defined by name)."""
        for key in set(keys) - self._seen:
            self._seen.add(key)
            summary = "min,last" if key.endswith("/loss") else "max,last" if key.endswith(("/top1", "/top5")) else None
            hidden = bool(GAIN_STAT.fullmatch(key))
            if summary or hidden:
                self.run.define_metric(key, step_metric=STEP, summary=summary, hidden=hidden or None)

    def log(self, record: dict, step: int) -> None:
        record = {k: v for k, v in record.items() if k != "step"}
        record.update(gain_quantiles(record))
        self._define_new(record)
        self.last_step = step
        self.run.log({**record, STEP: step}, step=step)

    def log_histograms(self, tensors: dict[str, torch.Tensor], step: int, max_values: int = 10_000) -> None:
        hists = {}
        for key, t in tensors.items():
            flat = t.detach().reshape(-1).float()
            if flat.numel() > max_values:
                flat = flat[:: flat.numel() // max_values]
            hists[key] = self._wandb.Histogram(flat.cpu().numpy())
        self.last_step = step
        self.run.log({**hists, STEP: step}, step=step)

    def finish(self, summary: dict) -> None:
        """The charts, from the metrics.jsonl the loop has just closed, and the summary from its summary.json."""
        made = charts(read_metrics(self.run_dir / "metrics.jsonl"), summary.get("phases") or [])
        if made:
            self.run.log(made, step=self.last_step)
        self.run.summary.update(summary_fields(summary))
        self.run.finish()
