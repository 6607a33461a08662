"""Pick the best point of a Hydra sweep on a validation metric.

    python run.py -m experiment=quick arm=quick_funnel optimizer.gamma_p=1e-4,1e-3,1e-2 seed=0,1
    python -m experiments.select multirun/quick                                  # every run under the folder
    python -m experiments.select multirun/quick/sweeps/quick-1a2b3c4d.yaml       # the runs of that sweep only
    python -m experiments.select multirun/quick --sweep quick-1a2b3c4d --metric val/current/top1 --reduce mean
    python -m experiments.select multirun/quick --print-overrides                # the winner's swept keys only

A run is a directory under the folder with summary.json, or, for one that has not ended, metrics.jsonl or a
checkpoint (its config is read from the checkpoint). A point is one set of values of the swept keys; its runs differ
only in the seed. A run scores the last, max or mean (`--reduce`) of the metric over its evaluations, and a point
the mean ± std of its runs over the seeds that every point has (paired seeds). A point with a diverged or unfinished
run ranks below every point whose runs all finished (fewer failures first, then the mean); the counts are shown,
never dropped. Each run is read by experiments.runs.read_run: what is wrong with its files is a warning on stderr, a
summary.json that cannot be read is no summary (the run has not ended), and a run whose summary.json says it ended
at another step than its metrics.jsonl's last line is inconsistent: a failure, never finished, listed with why.

Which keys are swept, and which folders are refused:
- The runner writes each run's command-line overrides into its config (summary.json: config.launch.overrides, and
  the sweep id in launch.sweep). A key's value in a run is its override, else the run's resolved config value (the
  default it ran with; for `arm`, launch.arm), else "not set". The swept keys are the override keys whose values
  differ between the runs of one sweep, seed aside (runs that came from no sweep count as one).
- A key whose value differs between runs but within no single sweep was not swept (say two sweeps, one of them
  with trainer.epochs=1): refused, naming the keys and the sweeps to pick from with --sweep or a sweep record.
- The resolved configs must agree too, except under a swept key: `k=...` explains k and k.*, so a swept config
  group (`optimizer=...`) explains its own keys, and a group placed at the top level (`arm`, `experiment`, which are
  no key of the config) explains any. This catches a config edited between two runs of the same overrides.
- Older runs (no launch in summary.json): the swept keys are the resolved keys whose values differ, and a
  difference in trainer.*, dataset.*, model.* or name is refused: such runs cannot show it was swept rather than
  two experiments mixed. A folder mixing older and newer runs is refused; --sweep picks newer ones.
- Keys that say where or how a run ran, not what it trained (paths, device, workers, logger, progress bar: Hydra's
  override_dirname exclusions in configs/hydra/default.yaml, but experiment and name), never count.

--print-overrides prints the winner's swept keys as `key=value`, in Hydra's override grammar and quoted for the
shell, to paste after the sweep's other overrides: `python run.py experiment=quick arm=quick_funnel <printed>`.
A swept key the winner did not set (it ran the default) is left out.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re
import shlex
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser

from experiments.analysis import mean_std
from experiments.runs import read_run as read_files

REDUCERS = ("last", "max", "mean")
# Where or how a run ran, never what it trained: Hydra's override_dirname exclude_keys (configs/hydra/default.yaml)
# less experiment and name, which do change it; plus the launch record itself and Hydra's own keys.
IGNORED = ("run_root", "trainer.resume", "trainer.device", "trainer.num_workers", "trainer.progress_bar", "logger",
           "logger.mode", "logger.project", "logger.name", "logger.group", "logger.job_type", "logger.tags",
           "dataset.root", "dataset.download", "dataset.mnist_5k_path", "launch", "hydra")
OLDER_REFUSED = ("trainer", "dataset", "model", "name")  # older runs: a difference here is two experiments mixed
NOT_SET = "(not set)"
PARSER = OverridesParser.create()


class SelectError(ValueError):
    """Input the selection cannot use: printed as one line, `error: ...`."""


def under(key: str, prefixes) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def canon(value) -> str:
    return json.dumps(value, sort_keys=True, default=str)


@dataclass
class RunDir:
    path: Path
    status: str  # finished, diverged, unfinished or inconsistent (summary.json and metrics.jsonl disagree)
    config: dict  # the resolved config, flattened, without launch
    launch: dict | None  # None: an older run, trained before the runner recorded its overrides
    metrics: list[dict]
    overrides: dict  # key -> (the override's key as written, e.g. "+trainer.x", its value)
    problems: list[str] = field(default_factory=list)  # what is wrong with its files (experiments.runs.read_run)
    inconsistent: str | None = None  # why summary.json and metrics.jsonl disagree

    @property
    def seed(self):
        return self.config.get("seed", 0)

    @property
    def sweep(self) -> str | None:
        return (self.launch or {}).get("sweep")

    def value(self, key: str):
        """The key's value in this run: its override, else what it ran with."""
        if key in self.overrides:
            return self.overrides[key][1]
        if key == "arm" and self.launch is not None:
            return self.launch.get("arm")
        return self.config.get(key, NOT_SET)


def checkpoint_config(run_dir: Path) -> dict | None:
    """The config of a run that has not ended, from its newest readable checkpoint; None without one."""
    import torch
    from omegaconf import OmegaConf

    for name in ("last.pt", "previous.pt"):
        path = run_dir / "checkpoints" / name
        try:  # mmap: only the config is read, not the model
            saved = OmegaConf.create(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["config"])
        except Exception:  # absent, or cut short by a crash: torch and zipfile raise many kinds
            continue
        try:
            return OmegaConf.to_container(saved, resolve=True)
        except Exception:  # an interpolation this machine cannot resolve (an environment variable): keep it as written
            return OmegaConf.to_container(saved, resolve=False)
    return None


def parse_overrides(strings: list[str], where: Path) -> dict:
    try:
        parsed = PARSER.parse_overrides(list(strings))
    except Exception as err:
        raise SelectError(f"{where}: launch.overrides do not parse as Hydra overrides ({err})") from None
    out = {}
    for o in parsed:
        key = o.key_or_group + (f"@{o.package}" if o.package else "")
        out[key] = (o.get_key_element(), None if o.is_delete() else o.value())
    return out


def read_run(run_dir: Path) -> RunDir | None:
    """The run in `run_dir`; None when nothing says what it trained (no readable summary, no checkpoint)."""
    files = read_files(run_dir, gains=False)  # warns of what is wrong with the files
    if files.summary is not None:
        config, status = files.summary.get("config") or {}, files.status
    else:
        config, status = checkpoint_config(run_dir), "unfinished"
        if config is None:
            return None
    metrics = files.metrics
    launch = config.get("launch")
    if launch is not None and not launch.get("overrides") and not launch.get("sweep"):
        launch = None  # composed without the runner (the protocol in-process, a script): nothing recorded
    overrides = parse_overrides(launch.get("overrides") or [], run_dir) if launch else {}
    rest = {k: v for k, v in config.items() if k != "launch"}
    return RunDir(run_dir, status, flatten(rest), launch, metrics, overrides, files.problems, files.inconsistent)


def find_runs(root: Path) -> tuple[list[RunDir], list[Path]]:
    """The runs under `root`, and the run directories whose point cannot be known."""
    if not root.is_dir():
        raise SelectError(f"{root} is not a folder of runs nor a sweep record (multirun/<name>/sweeps/<id>.yaml)")
    dirs = {p.parent for name in ("summary.json", "metrics.jsonl") for p in root.rglob(name)}
    dirs |= {p.parent.parent for p in root.rglob("checkpoints/last.pt")}
    runs, unknown = [], []
    for run_dir in sorted(dirs):
        run = read_run(run_dir)
        (runs.append(run) if run else unknown.append(run_dir))
    if not runs:
        raise SelectError(f"no runs under {root} (a run directory holds summary.json)")
    return runs, unknown


def read_record(path: Path) -> tuple[Path, str]:
    """The folder and the sweep id of a sweep record, multirun/<name>/sweeps/<id>.yaml."""
    record = yaml.safe_load(path.read_text())
    if not isinstance(record, dict) or not record.get("sweep"):
        raise SelectError(f"{path} is not a sweep record: it has no 'sweep' key")
    return path.parent.parent, str(record["sweep"])


def sweeps_text(runs: list[RunDir]) -> str:
    counts = Counter(r.sweep or "no sweep" for r in runs if r.launch is not None)
    return ", ".join(f"{s} ({n} runs)" for s, n in sorted(counts.items()))


def pick_sweep(runs: list[RunDir], sweep: str, root: Path) -> list[RunDir]:
    """The sweep's runs: those it trained (launch.sweep) and those it found already ended, which an earlier sweep
    trained (listed in sweeps/<id>.runs); all count as this sweep's from here on."""
    listed = root / "sweeps" / f"{sweep}.runs"
    names = set(listed.read_text().split("\n")) if listed.exists() else set()
    picked = [dataclasses.replace(r, launch={**r.launch, "sweep": sweep}) for r in runs
              if r.launch is not None and (r.sweep == sweep or str(r.path.relative_to(root)) in names)]
    if not picked:
        raise SelectError(f"no run of sweep {sweep} under {root}; the sweeps there: {sweeps_text(runs) or 'none'}")
    return picked


def listed(differ: dict[str, set]) -> str:
    def values(texts):
        texts = sorted(texts)
        return ", ".join(texts[:4]) + (", ..." if len(texts) > 4 else "")
    return "; ".join(f"{k} ({values(v)})" for k, v in differ.items())


def launched_swept(runs: list[RunDir]) -> tuple[list[str], dict[str, set]]:
    """The swept override keys, and the override keys whose values differ between runs but within no sweep."""
    keys = sorted({k for r in runs for k in r.overrides if k != "seed" and not under(k.split("@")[0], IGNORED)})
    sweeps: dict[str | None, list[RunDir]] = {}
    for run in runs:
        sweeps.setdefault(run.sweep, []).append(run)
    swept, unswept = [], {}
    for key in keys:
        if any(len({canon(r.value(key)) for r in group}) > 1 for group in sweeps.values()):
            swept.append(key)
        elif len(values := {canon(r.value(key)) for r in runs}) > 1:
            unswept[key] = values
    return swept, unswept


def unexplained_config(runs: list[RunDir], swept: list[str]) -> dict[str, set]:
    """Resolved keys whose values differ between runs that no swept key explains."""
    paths = set().union(*(r.config for r in runs))
    names = [k.split("@")[0] for k in swept]
    if any(not any(under(p, [n]) for p in paths) for n in names):
        return {}  # a swept group placed at the top level (arm, experiment) may set any key
    out = {}
    for key in sorted(paths):
        if key == "seed" or under(key, IGNORED) or under(key, names):
            continue
        if len(values := {canon(r.config.get(key, NOT_SET)) for r in runs}) > 1:
            out[key] = values
    return out


def swept_keys(runs: list[RunDir], root: Path) -> list[str]:
    """The swept keys; a SelectError when the runs differ in keys that were not swept (see the module docstring)."""
    older = [r for r in runs if r.launch is None]
    if older and len(older) < len(runs):
        raise SelectError(f"{len(older)} runs under {root} have no launch record in summary.json (trained before the "
                          f"runner wrote one) and {len(runs) - len(older)} do: select them apart, e.g. with --sweep "
                          f"ID ({sweeps_text(runs)})")
    if older:
        flat = [r.config for r in runs]
        keys = sorted(set().union(*flat))
        swept = [k for k in keys if k != "seed" and not under(k, IGNORED)
                 and len({canon(f.get(k, NOT_SET)) for f in flat}) > 1]
        refused = {k: {canon(f.get(k, NOT_SET)) for f in flat} for k in swept if under(k, OLDER_REFUSED)}
        if refused:
            raise SelectError(f"the runs under {root} differ in {listed(refused)}, and they are older runs (no launch "
                              "record in summary.json) that cannot show those keys were swept: select runs of one "
                              "experiment, or train them again with the current runner")
        return swept
    swept, unswept = launched_swept(runs)
    unswept.update(unexplained_config(runs, swept))
    if unswept:
        ids = {r.sweep for r in runs}
        fix = (f"they come from several sweeps, {sweeps_text(runs)}: pick one with --sweep ID (or its record, "
               f"{root}/sweeps/ID.yaml)" if len(ids) > 1 else
               "they were trained under different configs: train them again under one, or select them apart")
        raise SelectError(f"the runs under {root} differ in keys that were not swept: {listed(unswept)}; {fix}")
    return swept


def run_score(run: RunDir, metric: str, reduce: str) -> float:
    # finite values only: the reader turns the "nan" a run wrote into a float
    values = [r[metric] for r in run.metrics if isinstance(r.get(metric), (int, float)) and math.isfinite(r[metric])]
    if not values:
        raise SelectError(f"{run.path} finished without a value of {metric} in its metrics.jsonl")
    return {"last": values[-1], "max": max(values), "mean": sum(values) / len(values)}[reduce]


def check_metric(runs: list[RunDir], metric: str, root: Path) -> None:
    """A metric that no run has (misspelt) is named, with the ones they have: before anything is scored."""
    keys = set().union(*({k for k in record} for r in runs for record in r.metrics))
    if metric in keys:
        return
    have = sorted(k for k in keys if k.startswith("val/")) or sorted(k for k in keys if "/" in k)
    shown = ", ".join(have[:30]) + (", ..." if len(have) > 30 else "") if have else "none logged yet"
    raise SelectError(f"no run under {root} has the metric {metric!r}; the validation metrics they have: {shown}")


@dataclass
class Point:
    values: dict  # swept key -> value
    keys: dict  # swept key -> the override's key as written (e.g. "+trainer.x")
    runs: list[RunDir]
    mean: float = math.nan
    std: float = math.nan
    failures: int = 0

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.runs)


def points_of(runs: list[RunDir], swept: list[str]) -> tuple[list[Point], list[Path]]:
    """The points, and the runs left out as repeats: the same resolved config run again in another folder (`seed=0`
    written out, say, where an earlier sweep ran the default seed 0). The finished one is kept, else the first."""
    points: dict[tuple, Point] = {}
    seen: dict[tuple, RunDir] = {}
    repeats = []
    for run in sorted(runs, key=lambda r: (r.status != "finished", str(r.path))):
        ident = tuple(canon(run.value(k)) for k in swept)
        first = seen.get((ident, canon(run.seed)))
        if first is not None:
            if first.config != run.config:
                raise SelectError(f"two runs of one point with seed {run.seed} but different configs: {first.path} "
                                  f"and {run.path}: remove one")
            repeats.append(run.path)
            continue
        seen[ident, canon(run.seed)] = run
        point = points.setdefault(ident, Point({k: run.value(k) for k in swept}, {}, []))
        point.keys.update({k: run.overrides[k][0] for k in swept if k in run.overrides})
        point.runs.append(run)
    return list(points.values()), repeats


def select(path: str | Path, metric: str = "val/current/top1", reduce: str = "last",
           sweep: str | None = None) -> dict:
    """The ranked points of the sweep at `path` (a folder of runs or a sweep record)."""
    if reduce not in REDUCERS:
        raise SelectError(f"--reduce must be one of {', '.join(REDUCERS)}, not {reduce!r}")
    root = Path(path)
    if root.is_file():
        root, recorded = read_record(root)
        if sweep and sweep != recorded:
            raise SelectError(f"--sweep {sweep} is not the record's sweep, {recorded}: give one of them")
        sweep = recorded
    runs, unknown = find_runs(root)
    if sweep:
        runs = pick_sweep(runs, sweep, root)
    swept = swept_keys(runs, root)
    check_metric(runs, metric, root)
    if not any(r.status == "finished" for r in runs):
        counts = Counter(r.status for r in runs)
        raise SelectError(f"no run under {root} finished: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    points, repeats = points_of(runs, swept)
    seeds = sorted({canon(r.seed) for r in runs})
    common = set.intersection(*({canon(r.seed) for r in p.runs} for p in points))
    if not common:
        raise SelectError(f"the points under {root} share no seed, so their means would not be paired: finish the "
                          "sweep (every point at the same seeds), or select a part that does")
    for point in points:
        paired = [r for r in point.runs if canon(r.seed) in common]
        point.failures = sum(r.status != "finished" for r in paired)
        point.mean, point.std, _ = mean_std([run_score(r, metric, reduce) for r in paired if r.status == "finished"])
    points.sort(key=lambda p: (p.failures, -p.mean if math.isfinite(p.mean) else math.inf))
    if not math.isfinite(points[0].mean):
        raise SelectError(f"no point under {root} has a finished run at the seeds every point has "
                          f"({', '.join(sorted(common))})")
    return {"root": root, "sweep": sweep, "metric": metric, "reduce": reduce, "swept": swept, "points": points,
            "seeds": seeds, "paired": sorted(common), "unknown": unknown, "runs": len(runs),
            "repeats": repeats}


def hydra_text(value) -> str:
    """`value` in Hydra's override grammar, so that it parses back to the same value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return repr(value)  # floats round-trip; inf and nan are Hydra's words too
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(hydra_text(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{hydra_text(v)}" for k, v in value.items()) + "}"
    text = str(value)
    if parses_to(text, text):
        return text
    # A quoted string: backslashes right before a quote (and at the end) are doubled, and each quote escaped.
    escaped = re.sub(r'(\\*)"', lambda m: m.group(1) * 2 + '\\"', text)
    return '"' + re.sub(r"(\\+)$", lambda m: m.group(1) * 2, escaped) + '"'


def parses_to(text: str, value) -> bool:
    try:
        parsed = PARSER.parse_override(f"k={text}").value()
    except Exception:
        return False
    same_nan = isinstance(value, float) and isinstance(parsed, float) and math.isnan(value) and math.isnan(parsed)
    return same_nan or (type(parsed) is type(value) and parsed == value)


def override(key: str, value) -> str:
    """`key=value` as one shell word that Hydra reads back as `value`."""
    text = hydra_text(value)
    if not parses_to(text, value):
        raise SelectError(f"cannot write {key}={value!r} as a Hydra override")
    return shlex.quote(f"{key}={text}")


def overrides_line(point: Point) -> str:
    return " ".join(override(point.keys.get(k, k), v) for k, v in point.values.items() if v is not NOT_SET)


def statuses(selection: dict) -> tuple[str, ...]:
    """The table's count columns: inconsistent only where a run is."""
    inconsistent = any(r.status == "inconsistent" for p in selection["points"] for r in p.runs)
    return ("finished", "diverged", "unfinished") + (("inconsistent",) if inconsistent else ())


def table(selection: dict) -> str:
    metric, swept = selection["metric"], selection["swept"]
    head = ["rank", *swept, f"{metric} ({selection['reduce']})", *statuses(selection)]
    rows = [head]
    for rank, p in enumerate(selection["points"], 1):
        score = (f"{p.mean:.4g} ± {p.std:.2g}" if math.isfinite(p.std) else f"{p.mean:.4g}") \
            if math.isfinite(p.mean) else "–"
        shown = [NOT_SET if p.values[k] is NOT_SET else hydra_text(p.values[k]) for k in swept]
        rows.append([str(rank), *shown, score, *(str(p.count(s)) for s in statuses(selection))])
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def report(selection: dict) -> str:
    seeds, paired = selection["seeds"], selection["paired"]
    of = f" (sweep {selection['sweep']})" if selection["sweep"] else ""
    lines = [f"{selection['root']}{of}: {selection['runs']} runs, {len(selection['points'])} points; mean ± std "
             f"over seeds {', '.join(paired)}" + (f" (seeds {', '.join(s for s in seeds if s not in paired)} are "
                                                 "not at every point: left out)" if len(paired) < len(seeds) else "")]
    if selection["unknown"]:
        lines.append(f"{len(selection['unknown'])} run directories have neither summary.json nor a checkpoint (point "
                     f"unknown): " + ", ".join(str(p) for p in selection["unknown"]))
    if selection["repeats"]:
        lines.append(f"{len(selection['repeats'])} runs repeat another run's config and seed (counted once): "
                     + ", ".join(str(p) for p in selection["repeats"]))
    inconsistent = [r for p in selection["points"] for r in p.runs if r.status == "inconsistent"]
    if inconsistent:
        lines.append(f"{len(inconsistent)} runs are inconsistent (counted as failures, never as finished): "
                     + "; ".join(f"{r.path} ({r.inconsistent})" for r in inconsistent))
    lines += [table(selection), f"best: {overrides_line(selection['points'][0]) or '(nothing was swept)'}"]
    return "\n".join(lines)


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit code 1, like every other error here
        print(f"error: {message}", file=sys.stderr)
        sys.exit(1)


def main(argv=None) -> None:
    parser = Parser(prog="python -m experiments.select", description=__doc__,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", help="a folder of run directories, or a sweep record multirun/<name>/sweeps/<id>.yaml")
    parser.add_argument("--metric", default="val/current/top1", help="a validation metric (default val/current/top1)")
    parser.add_argument("--reduce", default="last", choices=REDUCERS, help="over each run's evaluations")
    parser.add_argument("--sweep", help="only the runs of this sweep id (launch.sweep)")
    parser.add_argument("--print-overrides", action="store_true", help="print only the winner's swept key=value")
    args = parser.parse_args(argv)
    try:
        selection = select(args.path, args.metric, args.reduce, args.sweep)
        print(overrides_line(selection["points"][0]) if args.print_overrides else report(selection))
    except (SelectError, OSError, yaml.YAMLError) as err:
        print(f"error: {str(err).splitlines()[0] if str(err) else type(err).__name__}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
