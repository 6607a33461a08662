"""The tuning protocol behind every comparison table: equal budgets, quasi-random search, edges extended, selection on
validation at a seed kept apart, then paired finals.

    python -m experiments.protocol configs/tuning/rotated_mnist.yaml --variant mnist5k_b10k \
        --root multirun/fig3/mnist5k_b10k

A study file (configs/tuning/*.yaml) names an experiment, the variant's overrides, the selection metric, the budget
and the methods; each method names its search space (configs/search/<name>.yaml). For each method, in the order
given:
  1. tuning: `budget` trials at the selection seed, drawn as Halton points over the space (AlgoPerf's external-tuning
     ruleset draws its trials the same way), or the full grid of a space marked `grid: true`;
  2. edges: while the best trial is the most extreme trial on a knob with an open range (no trial beyond it), that
     range is extended by half its explored width beyond that end and `budget // 2` more trials are drawn there
     (at most `max_extensions` times); a range that reaches its `hard_min`/`hard_max` stops there, and the limit is
     recorded;
  3. finals: the chosen point at every final seed (the same seeds for every method: same init, same data order).
A space with no knobs (configs/search/fixed.yaml) tunes nothing and spends no trial: the method runs at its config's
values and the values it ties to another method's pick (the paper's protocols, or a run too costly to tune).
Ablations run the chosen point of one method with one override changed, at the final seeds, without re-tuning.
With `one_shot: true`, every method also runs at its documented defaults (its optimizer config, untuned) at the final
seeds: what a user gets without tuning.
Diverged trials score -inf and are counted, never dropped. Everything lands in <root>/protocol.json; every run in
<root>/<method>/{tune,finals}/..., resumable: a restarted study reuses a run that already ended only when the config
it ended under is the one the study would run now (settings that change no training aside: logging, labels, where the
data is read from); protocol.json lists the runs an invocation reused ("reused"). A run that ended under another
config (another --extra, or another pick after another --budget) stops the study with one line naming the run and
the keys that differ: use another --root, or delete that run's folder to train it again. One study at a time on a
root (a lock on <root>/.lock). Runs train in this process, or each in its own process under a launcher
(`--launch "torchrun --nproc_per_node=8"`). With `--logger wandb` every run is also a W&B run (offline unless
`--extra logger.mode=online`), grouped <study>/<method>/<tune|finals>. A bad input (study file, arguments, a run
that fails with the runner's own error) ends in one line, `error: ...`, exit code 1 (--traceback or
HYDRA_FULL_ERROR=1 shows the traceback).
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import math
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from experiments.analysis import REDUCERS, finished, score
from experiments.runs import find_runs
from funnel.train import signals
from funnel.train.lock import RunDirectoryInUse, RunLock
from funnel.train.records import load_summary

ROOT = Path(__file__).resolve().parents[1]
SEARCH_DIR = ROOT / "configs" / "search"
PRIMES = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37)
SCALINGS = ("log", "linear")
QUIET = ("trainer.progress_bar=false",)  # every study run, in-process or launched
LOGGERS = ("none", "wandb")


# ------------------------------------------------------------------------------------------------ errors
class StudyError(Exception):
    """A study that cannot go on, said in one line that says what to do: `main` prints it without a traceback."""


class BadStudy(StudyError, ValueError):
    """A study file, search space or command-line argument that is wrong."""


class StaleRun(StudyError, ValueError):
    """A run folder of the study holds a run that ended under another config than the one the study would run there
    now (or whose summary cannot be read): it is neither reused nor trained over."""


class StudyInUse(StudyError, RuntimeError):
    """Another protocol runs a study on the same root."""


class RunFailed(StudyError, RuntimeError):
    """A run of the study failed with an error the runner explains (bad settings, missing files or packages)."""


class AllDiverged(StudyError, RuntimeError):
    """Every tuning trial of a method diverged or failed: there is no pick to run the finals at."""


def one_line(err: BaseException) -> str:
    """An error's message on one line (Hydra's and YAML's span several)."""
    return "; ".join(line.strip() for line in str(err).splitlines() if line.strip()) or type(err).__name__


# ------------------------------------------------------------------------------------------------ search spaces
@dataclass(frozen=True)
class Knob:
    """One tuned override: a range (`low`, `high` with a scaling) or a list of feasible points."""

    key: str
    low: float | None = None
    high: float | None = None
    scaling: str = "log"
    points: tuple | None = None
    hard_min: float | None = None  # a range is never extended past these
    hard_max: float | None = None

    def __post_init__(self):
        if self.points is None:
            if self.low is None or self.high is None or not self.low < self.high:
                raise ValueError(f"search knob {self.key}: needs min < max (or feasible_points), got "
                                 f"min={self.low}, max={self.high}")
            if self.scaling not in SCALINGS:
                raise ValueError(f"search knob {self.key}: scaling {self.scaling!r} is not one of {SCALINGS}")
            if self.scaling == "log" and min(v for v in (self.low, self.hard_min) if v is not None) <= 0:
                raise ValueError(f"search knob {self.key}: a log range needs min and hard_min > 0, got "
                                 f"min={self.low}, hard_min={self.hard_min}")
        elif not self.points:
            raise ValueError(f"search knob {self.key}: feasible_points is empty")

    @property
    def is_range(self) -> bool:
        return self.points is None

    def to_unit(self, value: float) -> float:
        """`value`'s coordinate in this knob's scaled units (log10 for a log range)."""
        return math.log10(value) if self.scaling == "log" else value

    def from_unit(self, u: float) -> float:
        return 10**u if self.scaling == "log" else u

    def value(self, q: float):
        """The knob's value at quasi-random coordinate q in [0, 1)."""
        if not self.is_range:
            return self.points[min(int(q * len(self.points)), len(self.points) - 1)]
        lo, hi = self.to_unit(self.low), self.to_unit(self.high)
        return float(f"{self.from_unit(lo + q * (hi - lo)):.4g}")  # 4 significant digits: readable run names

    def with_range(self, low: float, high: float) -> Knob:
        return Knob(self.key, low, high, self.scaling, None, self.hard_min, self.hard_max)


@dataclass(frozen=True)
class Space:
    name: str
    knobs: tuple[Knob, ...]
    grid: bool = False  # every combination of the feasible points instead of Halton draws
    note: str = ""  # why a space is what it is (e.g. "the paper's grid, not extended by design")

    def knob(self, key: str) -> Knob:
        return next(k for k in self.knobs if k.key == key)


def load_space(name: str, directory: Path | None = None) -> Space:
    directory = directory or SEARCH_DIR
    path = directory / f"{name}.yaml"
    if not path.exists():
        valid = sorted(p.stem for p in directory.glob("*.yaml"))
        raise FileNotFoundError(f"no search space {name!r} ({path}); valid: {valid}")
    spec = yaml.safe_load(path.read_text()) or {}
    grid, note = bool(spec.pop("grid", False)), str(spec.pop("note", ""))
    knobs = []
    for key, entry in (spec.get("knobs") or {}).items():
        unknown = set(entry) - {"min", "max", "scaling", "feasible_points", "hard_min", "hard_max"}
        if unknown:
            raise ValueError(f"{path}: knob {key} has unknown fields {sorted(unknown)}")
        points = entry.get("feasible_points")
        knobs.append(Knob(key, _num(entry.get("min")), _num(entry.get("max")), entry.get("scaling", "log"),
                          tuple(points) if points is not None else None, _num(entry.get("hard_min")),
                          _num(entry.get("hard_max"))))
    if grid and any(k.is_range for k in knobs):
        raise ValueError(f"{path}: a grid space takes feasible_points only")
    return Space(name, tuple(knobs), grid, note)


def _num(value):
    return None if value is None else float(value)


# ------------------------------------------------------------------------------------------------ quasi-random draws
def radical_inverse(index: int, base: int) -> float:
    """The van der Corput sequence's `index`-th value in `base`: the digits of `index` mirrored about the point."""
    out, scale = 0.0, 1.0 / base
    while index:
        index, digit = divmod(index, base)
        out += digit * scale
        scale /= base
    return out


def halton(count: int, dims: int, start: int = 1) -> list[list[float]]:
    """Halton points `start` .. `start + count - 1` in [0, 1)^dims (point 0 is the origin, so draws start at 1)."""
    if dims > len(PRIMES):
        raise ValueError(f"at most {len(PRIMES)} tuned knobs, got {dims}")
    return [[radical_inverse(i, PRIMES[d]) for d in range(dims)] for i in range(start, start + count)]


def draw(space: Space, count: int, start: int = 1) -> list[dict]:
    """`count` trials (override dicts) over `space`: Halton points from index `start`, or its whole grid."""
    if space.grid:
        trials = [{}]
        for knob in space.knobs:
            trials = [{**t, knob.key: p} for t in trials for p in knob.points]
        return trials
    return [{k.key: k.value(q) for k, q in zip(space.knobs, point)}
            for point in halton(count, len(space.knobs), start)]


# ------------------------------------------------------------------------------------------------ edges
@dataclass
class Edge:
    key: str
    side: str  # "low" or "high"
    limit: str | None = None  # why the range was not (or no more) extended


def edges(space: Space, explored: dict[str, tuple[float, float]], trials: list[dict], pick: dict) -> list[Edge]:
    """The open-range knobs on which the pick is the most extreme trial: no trial (finished or not) lies beyond it
    on that side, so a better value may lie outside the range explored. An edge whose explored end is the knob's
    hard bound gets that as its limit."""
    out = []
    for knob in space.knobs:
        if not knob.is_range or space.grid:
            continue
        value = knob.to_unit(pick[knob.key])
        tried = [knob.to_unit(t[knob.key]) for t in trials]
        lo, hi = explored[knob.key]
        for side, extreme, bound, end in (("low", min(tried), knob.hard_min, lo), ("high", max(tried), knob.hard_max,
                                                                                   hi)):
            if value != extreme:
                continue
            at_bound = bound is not None and math.isclose(knob.to_unit(bound), end, abs_tol=1e-9)
            out.append(Edge(knob.key, side, f"hard {'min' if side == 'low' else 'max'} {bound:g}" if at_bound
                            else None))
    return out


def extension(space: Space, explored: dict[str, tuple[float, float]], open_edges: list[Edge]) -> Space:
    """The space of an extension round: each edged knob over the new slice beyond its end (half the explored width,
    clipped at its hard bound); the other knobs over their original ranges or points."""
    knobs = []
    for knob in space.knobs:
        edge = next((e for e in open_edges if e.key == knob.key), None)
        if edge is None:
            knobs.append(knob)
            continue
        lo, hi = explored[knob.key]
        width = (hi - lo) / 2
        if edge.side == "low":
            new_lo = lo - width if knob.hard_min is None else max(lo - width, knob.to_unit(knob.hard_min))
            knobs.append(knob.with_range(knob.from_unit(new_lo), knob.from_unit(lo)))
        else:
            new_hi = hi + width if knob.hard_max is None else min(hi + width, knob.to_unit(knob.hard_max))
            knobs.append(knob.with_range(knob.from_unit(hi), knob.from_unit(new_hi)))
    return Space(space.name, tuple(knobs), False, space.note)


# ------------------------------------------------------------------------------------------------ the study
@dataclass
class Study:
    """A study file, for one variant: what every run shares, the selection rule, and the methods."""

    experiment: str
    metric: str
    reduce: str
    methods: dict
    common: list[str] = field(default_factory=list)
    tuning_common: list[str] = field(default_factory=list)  # only for the tuning trials (e.g. hold out a val set)
    search_dir: str | None = None  # where the methods' spaces are (default configs/search)
    one_shot: bool = False  # also run every method at its documented defaults (no tuning) at the final seeds
    ablations: dict = field(default_factory=dict)
    budget: int = 16
    selection_seed: int = 100
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    max_extensions: int = 3

    def __post_init__(self):
        if isinstance(self.budget, bool) or not isinstance(self.budget, int) or self.budget < 1:
            raise BadStudy(f"the budget is a number of trials per method, at least 1; got {self.budget!r}")
        if not isinstance(self.seeds, (list, tuple)) or not self.seeds or not all(
                isinstance(s, int) and not isinstance(s, bool) for s in self.seeds):
            raise BadStudy(f"the final seeds are a non-empty list of whole numbers; got {self.seeds!r}")
        if isinstance(self.max_extensions, bool) or not isinstance(self.max_extensions, int) or \
                self.max_extensions < 0:
            raise BadStudy(f"max_extensions is a whole number >= 0; got {self.max_extensions!r}")
        if self.reduce not in REDUCERS:
            raise BadStudy(f"reduce must be one of {REDUCERS}; got {self.reduce!r}")
        if not isinstance(self.methods, dict) or not self.methods:
            raise BadStudy(f"methods must map each method's name to its settings; got {self.methods!r}")

    @classmethod
    def load(cls, path: str | Path, variant: str | None = None, methods: list[str] | None = None,
             **override) -> Study:
        """The study in `path` for `variant`, with only `methods` (in the file's order) if given. Anything wrong with
        the file, its methods file or its search spaces is a BadStudy that names it."""
        path = Path(path)
        spec = read_mapping(path, "study file")
        shared = spec.pop("methods_from", None)  # methods listed once for several studies (e.g. the peers)
        if shared is not None:
            if not isinstance(shared, str) or shared in ("", ".", "..") or Path(shared).name != shared or \
                    "\\" in shared:
                raise BadStudy(f"{path}: methods_from names a file beside the study file, without folders; "
                               f"got {shared!r}")
            methods_file = read_mapping(path.parent / shared, "methods file (methods_from)")
            if not isinstance(methods_file.get("methods"), dict):
                raise BadStudy(f"{path.parent / shared}: a methods file (methods_from) holds a `methods` mapping")
            spec["methods"] = {**(spec.get("methods") or {}), **methods_file["methods"]}
        variants = spec.pop("variants", {}) or {}
        if variant is None and variants:
            raise BadStudy(f"{path} has variants {sorted(variants)}: pass --variant")
        if variant is not None and variant not in variants:
            raise BadStudy(f"unknown variant {variant!r} of {path}; valid: {sorted(variants)}")
        common = list(spec.pop("common", []) or []) + list(variants.get(variant, []) if variant else [])
        fields = {f.name for f in dataclasses.fields(cls)} - {"common"}
        unknown = sorted(set(spec) - fields)
        if unknown:
            valid = sorted(fields | {"common", "variants", "methods_from"})
            raise BadStudy(f"{path}: unknown fields {unknown}; valid: {valid}")
        missing = sorted(f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING and
                         f.default_factory is dataclasses.MISSING and f.name not in spec)
        if missing:
            raise BadStudy(f"{path}: missing fields {missing}")
        spec.update({k: v for k, v in override.items() if v is not None})
        if not isinstance(spec["methods"], dict):
            raise BadStudy(f"{path}: methods must map each method's name to its settings")
        if methods:
            unknown = set(methods) - set(spec["methods"])
            if unknown:
                raise BadStudy(f"{path} has no methods {sorted(unknown)}; valid: {list(spec['methods'])}")
            spec["methods"] = {k: v for k, v in spec["methods"].items() if k in methods}
            spec["ablations"] = {k: v for k, v in (spec.get("ablations") or {}).items() if v.get("of") in methods}
        try:
            study = cls(common=common, **spec)
        except BadStudy as err:
            raise BadStudy(f"{path}: {err}") from None
        search_dir = None
        if study.search_dir is not None:
            search_dir = Path(study.search_dir)
            if not search_dir.is_dir():
                where = "" if search_dir.is_absolute() else f" ({search_dir.resolve()})"
                raise BadStudy(f"{path}: search_dir {study.search_dir!r} is not a folder{where}")
        for name, method in study.methods.items():
            if not isinstance(method, dict) or "space" not in method:
                raise BadStudy(f"{path}: method {name} needs a `space` (a search space in configs/search, or fixed)")
            unknown = set(method) - {"label", "base", "space", "tie"}
            if unknown:
                raise BadStudy(f"{path}: method {name} has unknown fields {sorted(unknown)}")
            order = list(study.methods)
            for key, (source, _) in (method.get("tie") or {}).items():
                if source not in order or order.index(source) >= order.index(name):
                    raise BadStudy(f"{path}: {name} ties {key} to {source!r}: name a method listed before it")
            try:
                load_space(str(method["space"]), search_dir)
            except (OSError, ValueError) as err:
                raise BadStudy(f"{path}: method {name}: {one_line(err)}") from None
        for name, ablation in study.ablations.items():
            unknown = set(ablation) - {"of", "label", "set", "flip"}
            if unknown:
                raise BadStudy(f"{path}: ablation {name} has unknown fields {sorted(unknown)}")
            if ablation.get("of") not in study.methods:
                raise BadStudy(f"{path}: ablation {name} is of {ablation.get('of')!r}, not a method of the study")
        return study


def read_mapping(path: Path, what: str) -> dict:
    """The YAML mapping in `path`; a BadStudy naming the file when it is missing, unreadable or not a mapping."""
    if not path.is_file():
        raise BadStudy(f"no {what} {path}" + ("" if path.parent.is_dir() else f" (no folder {path.parent})"))
    try:
        spec = yaml.safe_load(path.read_text())
    except (OSError, ValueError, yaml.YAMLError) as err:
        raise BadStudy(f"{path}: not a readable {what}: {one_line(err)}") from None
    if not isinstance(spec, dict):
        raise BadStudy(f"{path}: a {what} is a mapping of fields; got {type(spec).__name__}")
    return spec


def override_text(key: str, value) -> str:
    """A Hydra override for `value`, quoted where Hydra's grammar needs it."""
    if isinstance(value, bool):
        text = str(value).lower()
    elif value is None:
        text = "null"
    elif isinstance(value, (int, float)):
        text = repr(value)
    elif isinstance(value, (list, tuple)):
        text = "[" + ",".join(override_text("x", v)[2:] for v in value) + "]"
    else:
        text = "'" + str(value).replace("'", "\\'") + "'"
    return f"{key}={text}"


def run_name(values: dict) -> str:
    return ",".join(f"{k.rsplit('.', 1)[-1]}={v}".replace(" ", "") for k, v in values.items()) or "default"


def logger_overrides(logger: str, study: str, run_dir: Path) -> list[str]:
    """No W&B (the default), or W&B runs grouped by study, method and stage (<study>/<method>/<tune|finals|...>),
    job_type the method; a run is <root>/<method>/<stage>/<run>. A tuning trial is named after its values (its
    label and seed are those of every other trial); --extra logger.* overrides win, as they come later."""
    if logger == "none":
        return ["logger=none"]
    method, stage = run_dir.parent.parent.name, run_dir.parent.name
    named = [override_text("logger.name", f"{method} {run_dir.name}")] if stage == "tune" else []
    return [f"logger={logger}", override_text("logger.group", f"{study}/{method}/{stage}"),
            override_text("logger.job_type", method), *named]


def compose_run(overrides: list[str], run_dir: Path):
    """The config Hydra composes from `overrides` (configs/config.yaml), as the runner does; a BadStudy naming the
    run when they do not compose (a bad override of the study file or of --extra)."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from funnel.train import resolvers

    resolvers.register()
    try:
        with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
            return compose("config", overrides=overrides)
    except (HydraException, OmegaConfBaseException) as err:
        raise BadStudy(f"the overrides of {run_dir} do not compose ({one_line(err)}); check the study file's "
                       "overrides and --extra") from None


class StudyRunner:
    """What both runners share: the overrides every run of the study gets, and the config it resolves to."""

    def __init__(self, extra: list[str] = (), logger: str = "none", study: str = "study"):
        self.extra, self.logger, self.study = list(extra), logger, study

    def run_overrides(self, overrides: list[str], run_dir: Path) -> list[str]:
        return [*overrides, *QUIET, *logger_overrides(self.logger, self.study, run_dir), *self.extra]

    def config(self, overrides: list[str], run_dir: Path) -> dict:
        """The resolved config the run would train under: what its summary.json holds under "config"."""
        from omegaconf import OmegaConf
        from omegaconf.errors import OmegaConfBaseException

        cfg = compose_run(self.run_overrides(overrides, run_dir), run_dir)
        try:
            return OmegaConf.to_container(cfg, resolve=True)
        except OmegaConfBaseException as err:
            raise BadStudy(f"the config of {run_dir} does not resolve ({one_line(err)})") from None


class Runner(StudyRunner):
    """Composes a config from overrides and trains it in this process (one Python start for the whole study)."""

    def __call__(self, overrides: list[str], run_dir: Path) -> None:
        from funnel.cli import is_user_error
        from funnel.train.loop import train

        cfg = compose_run(self.run_overrides(overrides, run_dir), run_dir)
        try:
            train(cfg, run_dir)
        except Exception as err:
            if not is_user_error(err):  # a bug keeps its traceback
                raise
            raise RunFailed(f"run {run_dir} failed: {type(err).__name__}: {one_line(err)}") from err


class LaunchedRunner(StudyRunner):
    """Trains each run in its own process started by `launch` (e.g. torchrun over several GPUs or nodes) through
    run.py, for runs one process cannot hold; the same overrides and run directory as the in-process Runner."""

    def __init__(self, launch: list[str], extra: list[str] = (), logger: str = "none", study: str = "study"):
        super().__init__(extra, logger, study)
        self.launch = list(launch)

    def __call__(self, overrides: list[str], run_dir: Path) -> None:
        command = [*self.launch, str(ROOT / "run.py"), *self.run_overrides(overrides, run_dir),
                   override_text("hydra.run.dir", str(run_dir))]
        try:
            code = subprocess.run(command, cwd=ROOT).returncode
        except OSError as err:  # the launcher itself is missing or cannot be run
            raise RunFailed(f"cannot start the launcher {self.launch[0]!r} ({one_line(err)}): "
                            f"{shlex.join(command)}") from None
        if code != 0 and not (run_dir / "summary.json").exists():
            raise RunFailed(f"run failed before it wrote a summary: {shlex.join(command)}")


def ended_config(run_dir: Path) -> dict:
    """The resolved config the run in `run_dir` ended under (its summary.json's "config"); a StaleRun naming the
    file when that cannot be read."""
    path = run_dir / "summary.json"
    summary, problem = load_summary(path)
    if summary is not None and not isinstance(summary.get("config"), dict):
        problem = "no config in it"
    if problem:
        raise StaleRun(f"{path} is not a summary this study can check ({problem}), so whether that run is this "
                       f"study's cannot be told: delete {run_dir} to train that run again, or use another --root for "
                       "this study")
    return summary["config"]


def ensure_run(runner, overrides: list[str], run_dir: Path) -> bool:
    """Train `overrides` into `run_dir` unless a run there already ended under the config they give now (returns
    True: reused). A run that ended under another config (keys that change no training aside) is a StaleRun: its
    results are not this command's, and training over them is for the user to decide."""
    if not (run_dir / "summary.json").exists():
        runner(overrides, run_dir)
        return False
    from funnel.train.checkpoint import listed, training_differences

    old = ended_config(run_dir)
    new = json.loads(json.dumps(runner.config(overrides, run_dir), default=str))  # as summary.json holds it
    changes = training_differences(old, new)
    if changes:
        raise StaleRun(f"{run_dir} already ended under another config than this study's now ({listed(changes)}): "
                       f"use another --root for this study, or delete {run_dir} to train that run again")
    return True


def trial_score(run_dir: Path, metric: str, reduce: str) -> tuple[float, str]:
    run = find_runs(run_dir)[0]
    return (score(run, metric, reduce) if finished(run) else -math.inf), run.status


def tune(study: Study, name: str, root: Path, runner, record: dict, reused: list[str] | None = None) -> dict:
    """Tune method `name` (see the module docstring); returns its entry of protocol.json. The trials reused (runs
    that had ended under the same config) are marked so, and their folders appended to `reused`."""
    method = study.methods[name]
    space = load_space(method["space"], Path(study.search_dir) if study.search_dir else None)
    tied = {key: record[source]["pick"][source_key] for key, (source, source_key) in (method.get("tie") or {}).items()}
    base = [f"experiment={study.experiment}", *study.common, *method.get("base", []),
            override_text("label", method.get("label", name))]
    entry = {"label": method.get("label", name), "space": method["space"], "note": space.note, "base": base,
             "tied": tied, "rounds": [], "trials": [], "edges": [], "explored": {}, "diverged_trials": 0}
    if not space.knobs:  # nothing to tune: the config's values and the tied ones, without spending a trial
        return {**entry, "pick": tied, "pick_score": None}
    explored = {k.key: (k.to_unit(k.low), k.to_unit(k.high)) for k in space.knobs if k.is_range}
    current, start = space, 1
    for round_index in range(study.max_extensions + 1):
        count = study.budget if round_index == 0 else max(study.budget // 2, 1)
        trials = draw(current, count, start)
        start += len(trials)
        entry["rounds"].append({"trials": len(trials), "ranges": {k.key: [k.low, k.high] if k.is_range
                                                                   else list(k.points) for k in current.knobs}})
        for values in trials:
            values = {**values, **tied}
            run_dir = root / name / "tune" / f"r{round_index}-{run_name(values)}"
            t0 = time.perf_counter()
            was_reused = ensure_run(runner, [*base, *study.tuning_common,
                                             *(override_text(k, v) for k, v in values.items()),
                                             f"seed={study.selection_seed}"], run_dir)
            if was_reused and reused is not None:
                reused.append(str(run_dir.relative_to(root)))
            try:
                value, status = trial_score(run_dir, study.metric, study.reduce)
            except ValueError as err:  # a metric the runs do not log
                raise BadStudy(f"{one_line(err)} (the study's metric)") from None
            entry["trials"].append({"round": round_index, "values": values, "score": value, "status": status,
                                    "run": str(run_dir.relative_to(root)), "reused": was_reused,
                                    "seconds": time.perf_counter() - t0})
        best = max(entry["trials"], key=lambda t: t["score"])
        if not math.isfinite(best["score"]):
            raise AllDiverged(f"{name}: every one of {len(entry['trials'])} trials diverged or failed; "
                              f"see {root / name / 'tune'}")
        entry["pick"] = best["values"]
        entry["pick_score"] = best["score"]
        found = edges(space, explored, [t["values"] for t in entry["trials"]], best["values"])
        open_edges = [e for e in found if e.limit is None]
        if open_edges and round_index == study.max_extensions:
            for e in open_edges:
                e.limit = f"{study.max_extensions} extensions"
        entry["edges"] = [vars(e) for e in found]
        if not open_edges or round_index == study.max_extensions:
            break
        current = extension(space, explored, open_edges)
        for e in open_edges:
            knob, (lo, hi) = current.knob(e.key), explored[e.key]
            explored[e.key] = (min(lo, knob.to_unit(knob.low)), max(hi, knob.to_unit(knob.high)))
    entry["explored"] = {k: [space.knob(k).from_unit(lo), space.knob(k).from_unit(hi)]
                         for k, (lo, hi) in explored.items()}
    entry["diverged_trials"] = sum(t["status"] == "diverged" for t in entry["trials"])
    return entry


def finals(study: Study, root: Path, runner, name: str, base: list[str], values: dict, folder: str,
           reused: list[str] | None = None) -> list[str]:
    """`values` at every final seed, in <root>/<folder>/seed=<seed>; the folders (those reused appended to
    `reused`)."""
    dirs = []
    for seed in study.seeds:
        run_dir = root / folder / f"seed={seed}"
        if ensure_run(runner, [*base, *(override_text(k, v) for k, v in values.items()), f"seed={seed}"], run_dir) \
                and reused is not None:
            reused.append(str(run_dir.relative_to(root)))
        dirs.append(str(run_dir.relative_to(root)))
    return dirs


@contextlib.contextmanager
def study_lock(root: Path, methods: list[str]):
    """One study of the same methods at a time on `root`: the runner's lock (an flock) for the study's whole life.
    Studies of disjoint methods may share a root (the reproduction scripts run one study in two lanes that way)."""
    name = ".lock-" + hashlib.sha1(" ".join(methods).encode()).hexdigest()[:8]
    lock = RunLock(root, name)
    try:
        lock.__enter__()
    except RunDirectoryInUse as err:
        raise StudyInUse(f"{root} is in use by process {err.holder}, which is running a study of the same methods "
                         "there; wait for it to end, or stop it, or give this study another --root") from None
    try:
        yield
    finally:
        lock.__exit__(None, None, None)


def run_study(study: Study, root: str | Path, runner=None) -> dict:
    """Tune every method, run its finals and the ablations; write and return <root>/protocol.json, whose "reused"
    lists the runs (relative to the root) this invocation found ended under the same config and did not train."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    with study_lock(root, list(study.methods)):
        return run_locked(study, root, runner or Runner())


def run_locked(study: Study, root: Path, runner) -> dict:
    path = root / "protocol.json"
    reused = []
    record = {"study": dict(vars(study)), "methods": {}, "ablations": {}, "reused": reused}
    t0 = time.perf_counter()
    for name in study.methods:
        entry = tune(study, name, root, runner, record["methods"], reused)
        entry["finals"] = finals(study, root, runner, name, entry["base"], entry["pick"], f"{name}/finals", reused)
        if study.one_shot:
            entry["one_shot"] = finals(study, root, runner, name, entry["base"], {}, f"{name}/one_shot", reused)
        record["methods"][name] = entry
        path.write_text(json.dumps(record, indent=2) + "\n")
    for name, ablation in study.ablations.items():
        of = record["methods"][ablation["of"]]
        base = [*of["base"], override_text("label", ablation.get("label", name))]
        changed = {**ablation.get("set", {}), **{k: not of["pick"][k] for k in ablation.get("flip", [])}}
        values = {**of["pick"], **changed}
        record["ablations"][name] = {"label": ablation.get("label", name), "of": ablation["of"], "base": base,
                                     "changed": changed, "values": values,
                                     "finals": finals(study, root, runner, name, base, values, f"{name}/finals",
                                                      reused)}
        path.write_text(json.dumps(record, indent=2) + "\n")
    record["seconds_this_invocation"] = time.perf_counter() - t0  # the runs reused took no training
    path.write_text(json.dumps(record, indent=2) + "\n")
    return record


def parse_seeds(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        seeds = [int(s) for s in text.split(",")]
    except ValueError:
        seeds = []
    if not seeds:
        raise BadStudy(f"--seeds takes whole numbers separated by commas, e.g. 0,1,2,3,4; got {text!r}")
    return seeds


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("study", help="a study file, e.g. configs/tuning/rotated_mnist.yaml")
    parser.add_argument("--variant")
    parser.add_argument("--root", required=True, help="where the runs and protocol.json go")
    parser.add_argument("--budget", type=int, help="trials per method (default: the study's)")
    parser.add_argument("--seeds", help="final seeds, e.g. 0,1,2,3,4 (default: the study's)")
    parser.add_argument("--methods", nargs="+", help="only these methods of the study (default: all)")
    parser.add_argument("--extra", nargs="*", default=[], help="overrides appended to every run")
    parser.add_argument("--tuning-common", nargs="*", help="overrides for the tuning trials only, instead of the "
                                                           "study's tuning_common")
    parser.add_argument("--launch", help="start each run in its own process with this launcher, e.g. "
                                         "'torchrun --standalone --nproc_per_node=8' (default: all in this process)")
    parser.add_argument("--logger", choices=LOGGERS, default="none",
                        help="wandb: a W&B run per study run (offline unless --extra logger.mode=online), grouped "
                             "<study>/<method>/<tune|finals>; default none")
    parser.add_argument("--traceback", action="store_true",
                        help="show an error's traceback (as HYDRA_FULL_ERROR=1 does) instead of one line")
    args = parser.parse_args(argv)
    signals.install()  # SIGTERM (a preempted job) ends the study's current run cleanly, as Ctrl-C does
    try:
        study = Study.load(args.study, args.variant, args.methods, budget=args.budget, seeds=parse_seeds(args.seeds),
                           tuning_common=args.tuning_common)
        study_name = Path(args.study).stem + (f"-{args.variant}" if args.variant else "")  # the W&B groups' first part
        try:
            launch = shlex.split(args.launch) if args.launch is not None else None
        except ValueError as err:
            raise BadStudy(f"--launch {args.launch!r}: {err}") from None
        if launch == []:
            raise BadStudy("--launch names no launcher")
        runner = (LaunchedRunner(launch, args.extra, args.logger, study_name) if launch
                  else Runner(args.extra, args.logger, study_name))
        record = run_study(study, args.root, runner)
    except StudyError as err:
        if args.traceback or os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"error: {one_line(err)}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt as err:
        print(f"\n{signals.WHAT[signals.signal_name(err)]}: the study stopped. Run the same command to go on: the runs "
              "that ended are reused, and the run it stopped resumes from its checkpoint", file=sys.stderr)
        sys.exit(signals.exit_code(err))
    for name, entry in record["methods"].items():
        score = "not tuned" if entry["pick_score"] is None else f"score {entry['pick_score']:.3f}"
        print(f"{name}: pick {entry['pick']} ({score}, {len(entry['trials'])} trials, "
              f"{entry['diverged_trials']} diverged)")
    if record["reused"]:
        print(f"{len(record['reused'])} runs had ended under this config and were reused (protocol.json: reused)")


if __name__ == "__main__":
    main()
