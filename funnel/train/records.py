"""What a run leaves in its directory: metrics.jsonl (the record), gains.npz (gain trajectories) and summary.json.
Only rank 0 writes. On resume, entries past the checkpoint's step are dropped so the record matches an
uninterrupted run."""
from __future__ import annotations

import json
import math
import os
import platform
import subprocess
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from funnel.train.console import say


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware(device: torch.device, world_size: int) -> dict:
    """The machine rank 0 trains on, recorded when it trains (a report built elsewhere later must not guess): its
    GPU (the one it uses, not every GPU the host has; each of the world_size ranks has its own) and CPU."""
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    return {"cpu": cpu_name(), "cores": os.cpu_count(), "gpus": [gpu] if gpu else [], "host": platform.node(),
            "world_size": world_size, "torch": torch.__version__, "python": platform.python_version()}


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _jsonable(value):
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN/inf; "nan" stays readable
    return value


class MetricsLog:
    """metrics.jsonl: one JSON object per logged step. It keeps the step of every line it wrote, and a checkpoint
    keeps that list (`state_dict`), so a resume can tell which lines the file lost since (a deleted, cut or damaged
    file): those steps are said at once and named in summary.json (`summary()`), never silently left out."""

    def __init__(self, path: str | Path, resume_step: int | None = None, saved: dict | None = None):
        self.path = Path(path)
        self.logged: list[int] = []  # the step of each line the file holds, in order
        self.missing: list[int] = []  # the steps of lines written and since lost
        if resume_step is None:
            self.path.write_text("")
        else:
            kept = self._resume(resume_step, saved)
            _atomic_write_text(self.path, "".join(line + "\n" for line in kept))
        self._file = open(self.path, "a")

    def _resume(self, resume_step: int, saved: dict | None) -> list[str]:
        """The lines up to the checkpoint's step, and what the file lost before it (with a notice)."""
        lines = list(metrics_lines(self.path))
        kept, steps, unreadable, reached = [], [], [], None
        for number, line, record in lines:
            if record is None:
                unreadable.append(number)
            elif record["step"] <= resume_step:
                kept.append(line)
                steps.append(record["step"])
            else:
                reached = record["step"]
        if lines and unreadable == [lines[-1][0]]:
            say(f"{self.path}: dropped its last line, cut short by an interrupted write")
        elif unreadable:
            say(f"{self.path}: dropped {len(unreadable)} unreadable line(s) (line {_ranges(unreadable)}): the file "
                "was damaged")
        if reached is not None:
            say(f"{self.path}: the run had logged up to step {reached}; its lines after step {resume_step} are dropped "
                "and those steps trained again")
        if saved is None:  # a checkpoint from before the record was kept: what is there is all it knows
            self.logged = steps
            return kept
        present = Counter(steps)
        lost = []
        for step in saved["logged"].tolist():
            if present[step]:
                present[step] -= 1
                self.logged.append(step)
            else:
                lost.append(step)
        self.missing = sorted(saved["missing"].tolist() + lost)
        if lost:
            say(f"{self.path}: {len(lost)} line(s) written before the checkpoint are missing (step "
                f"{_ranges(lost)}): the file was deleted, cut or damaged. The run goes on; summary.json names the "
                "missing steps")
        return kept

    def write(self, record: dict) -> None:
        self._file.write(json.dumps({k: _jsonable(v) for k, v in record.items()}) + "\n")
        self._file.flush()
        self.logged.append(record["step"])

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The steps of the lines written and of those lost, for the checkpoint."""
        return {"logged": torch.tensor(self.logged, dtype=torch.int64),
                "missing": torch.tensor(self.missing, dtype=torch.int64)}

    def summary(self) -> dict:
        """summary.json's `record`: how many lines metrics.jsonl holds, the step of the last, and the steps whose
        lines were lost before the run ended (first and last step of each stretch)."""
        return {"lines": len(self.logged), "last_step": self.logged[-1] if self.logged else None,
                "missing_steps": _stretches(self.missing, self.logged), "complete": not self.missing}

    def close(self) -> None:
        self._file.close()


def stretches_text(stretches) -> str:
    """[[1, 3], [7, 7]] -> "1-3, 7"."""
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in stretches)


def _ranges(numbers: list[int]) -> str:
    """1, 2, 3, 7 -> "1-3, 7"."""
    stretches = []
    for n in sorted(numbers):
        if stretches and n == stretches[-1][1] + 1:
            stretches[-1][1] = n
        else:
            stretches.append([n, n])
    return stretches_text(stretches)


def _stretches(missing: list[int], present: list[int]) -> list[list[int]]:
    """The missing steps as [first, last] stretches: consecutive in the order of all logged steps, with no present
    line between them."""
    out, flags = [], sorted([(s, False) for s in present] + [(s, True) for s in missing])
    for step, lost in flags:
        if lost and out and out[-1][2]:
            out[-1][1] = step
        elif lost:
            out.append([step, step, True])
        elif out:
            out[-1][2] = False
    return [[first, last] for first, last, _ in out]


NONFINITE = ("nan", "inf", "-inf")  # how metrics.jsonl writes the numbers JSON has no word for
ENDED = ("finished", "diverged")  # the statuses of a run's summary.json


def metrics_lines(path: str | Path):
    """Each non-empty line of metrics.jsonl: its number (from 1), its text, and its record, or None for a line that
    holds none (cut short by a crash, garbage, JSON that is no object with an integer "step"). No file, no lines."""
    path = Path(path)
    if not path.exists():
        return
    for number, line in enumerate(path.read_text(errors="replace").split("\n"), 1):
        if not line.strip("\r"):
            continue
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):  # JSONDecodeError is a ValueError
            record = None
        step = record.get("step") if isinstance(record, dict) else None
        yield number, line, record if isinstance(step, int) and not isinstance(step, bool) else None


def read_metrics_lines(path: str | Path) -> tuple[list[dict], list[int]]:
    """metrics.jsonl's records, with numbers as floats ("nan", "inf" written as strings come back as floats), and
    the numbers of the lines that hold no record."""
    records, unreadable = [], []
    for number, _, record in metrics_lines(path):
        if record is None:
            unreadable.append(number)
        else:
            records.append({k: float(v) if isinstance(v, str) and v in NONFINITE else v for k, v in record.items()})
    return records, unreadable


def read_metrics(path: str | Path) -> list[dict]:
    """metrics.jsonl's records; a line that holds none (see `metrics_lines`) is skipped."""
    return read_metrics_lines(path)[0]


def load_summary(path: str | Path) -> tuple[dict | None, str | None]:
    """A run's summary.json, or what is wrong with it, said to follow the file's name: one that cannot be read, is
    empty, is no JSON object or has no status of an ended run is no summary. (None, None) without the file."""
    path = Path(path)
    if not path.exists():
        return None, None
    try:
        text = path.read_text(errors="replace")
        summary = json.loads(text)
    except OSError as err:
        return None, f"cannot be read ({err.strerror or err})"
    except (ValueError, RecursionError) as err:
        return None, "is empty" if not text.strip() else f"is not valid JSON ({err})"
    if not isinstance(summary, dict):
        return None, "is not a JSON object"
    if "status" not in summary:
        return None, 'has no "status"'
    if summary["status"] not in ENDED:
        return None, f"has status {summary['status']!r}, neither finished nor diverged"
    return summary, None


def ended_steps(summary: dict, metrics: list[dict]) -> tuple[int, int | None] | None:
    """(the step a summary says its run ended at, metrics.jsonl's last step) when the two disagree, else None: the
    folder then holds no one run. The summary's step is its record's last_step, or in an older summary its "steps";
    a summary with neither is taken as it is."""
    is_int = lambda v: isinstance(v, int) and not isinstance(v, bool)
    record = summary.get("record") if isinstance(summary.get("record"), dict) else {}
    expected = next((v for v in (record.get("last_step"), summary.get("steps")) if is_int(v)), None)
    last = metrics[-1]["step"] if metrics else None
    return None if expected is None or last == expected else (expected, last)


def read_summary(path: str | Path) -> dict:
    """A run's summary.json, or a ValueError that names the file, what is wrong with it and what to do."""
    summary, problem = load_summary(path)
    if problem:
        raise ValueError(f"{path} {problem}: delete it to train the run again (from its checkpoint, if it has one)")
    return summary


def run_name(cfg) -> str:
    """How a run is called on the console and in W&B: its label (else its arm, else the experiment) and seed."""
    launch = cfg.get("launch") or {}
    return f"{cfg.get('label') or launch.get('arm') or cfg.name} seed={cfg.seed}"


class GainTrajectories:
    """Per parameter with Funnel state: its scale and the gains of `samples` fixed coordinates (chosen with a seed
    from the parameter's name), at every recorded step. Saved as gains.npz with arrays `step`, `scale/<name>`
    (T,), `gain/<name>` (T, k) and `index/<name>` (k,)."""

    def __init__(self, optimizer: torch.optim.Optimizer, named_parameters, samples: int = 8, seed: int = 0):
        self.optimizer = optimizer
        self.named = list(named_parameters)
        self.samples, self.seed = samples, seed
        self.index: dict[str, torch.Tensor] = {}
        self.steps: list[int] = []
        self.scales: dict[str, list[float]] = {}
        self.gains: dict[str, list[np.ndarray]] = {}

    def _tracked(self):
        for name, p in self.named:
            state = self.optimizer.state.get(p, {})
            if isinstance(state.get("gain"), torch.Tensor):
                if name not in self.index:
                    gen = torch.Generator().manual_seed(self.seed + sum(map(ord, name)))
                    pick = torch.randperm(p.numel(), generator=gen)[: self.samples]
                    self.index[name] = pick.sort().values
                yield name, state

    def record(self, step: int) -> None:
        tracked = list(self._tracked())
        if not tracked:
            return
        rows = [torch.cat([st["scale"].reshape(1).float(),
                           st["gain"].reshape(-1)[self.index[name].to(st["gain"].device)].float()])
                for name, st in tracked]
        flat = torch.cat([r.to(rows[0].device) for r in rows]).cpu()  # one device-to-host copy
        self.steps.append(step)
        for (name, _), row in zip(tracked, flat.split([len(r) for r in rows])):
            row = row.numpy()
            self.scales.setdefault(name, []).append(float(row[0]))
            self.gains.setdefault(name, []).append(row[1:])

    def arrays(self) -> dict[str, np.ndarray]:
        """The trajectories as gains.npz holds them (empty before the first record)."""
        if not self.steps:
            return {}
        arrays = {"step": np.asarray(self.steps)}
        for name in self.scales:
            arrays[f"scale/{name}"] = np.asarray(self.scales[name])
            arrays[f"gain/{name}"] = np.stack(self.gains[name])
            arrays[f"index/{name}"] = self.index[name].numpy()
        return arrays

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The trajectories as tensors, for the checkpoint: they are committed with it, all or nothing."""
        return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in self.arrays().items()}

    def save(self, path: str | Path) -> None:
        arrays = self.arrays()
        if not arrays:
            return
        tmp = Path(path).with_name(Path(path).name + ".tmp.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, path)

    def load(self, source, upto_step: int) -> None:
        """Continue the trajectories of an interrupted run, up to and including `upto_step`, from the checkpoint's
        `state_dict()` or (a checkpoint written before they were part of it) from a gains.npz path."""
        if isinstance(source, dict):
            data = {k: v.numpy() for k, v in source.items()}
        elif Path(source).exists():
            with np.load(source) as npz:
                data = {k: npz[k] for k in npz.files}
        else:
            return
        if "step" not in data:
            return
        keep = data["step"] <= upto_step
        self.steps = data["step"][keep].tolist()
        for key in data:
            if key.startswith("scale/"):
                name = key[len("scale/"):]
                self.scales[name] = data[key][keep].tolist()
                self.gains[name] = list(data[f"gain/{name}"][keep])
                self.index[name] = torch.from_numpy(data[f"index/{name}"])


def write_json(path: str | Path, payload: dict) -> None:
    _atomic_write_text(Path(path), json.dumps(payload, indent=2, default=str) + "\n")


def git_state(source: str | Path) -> dict:
    """The commit of the code that ran, and whether its tree had uncommitted changes."""
    try:
        run = lambda *args: subprocess.run(["git", *args], cwd=source, capture_output=True, text=True, timeout=10)
        top = run("rev-parse", "--show-toplevel").stdout.strip()
        if not top or Path(top).resolve() != Path(source).resolve():
            # an installed copy (site-packages) inside some other repository: that commit is not this code's
            from funnel import __version__
            return {"commit": None, "dirty": None, "version": __version__}
        commit = run("rev-parse", "HEAD").stdout.strip() or None
        dirty = bool(run("status", "--porcelain", "--untracked-files=no").stdout.strip()) if commit else None
        return {"commit": commit, "dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
