"""Where a result came from: data, model, steps, seeds, hardware, wall time, commit and the commands."""
from __future__ import annotations

import json
import os

from experiments.runs import Run
from funnel.train.records import cpu_name


def provenance(runs: list[Run], commands=()) -> dict:
    summaries = [r.summary for r in runs if r.summary]
    configs = [s["config"] for s in summaries]
    git = sorted({f"{s['git']['commit']}{'+dirty' if s['git']['dirty'] else ''}" for s in summaries})
    devices = sorted({s["device"] for s in summaries})
    return {
        "runs": len(runs),
        "data": sorted({json.dumps({k: v for k, v in c["dataset"].items() if k not in ("root", "mnist_5k_path")},
                                   sort_keys=True) for c in configs}),
        "model": sorted({json.dumps(c["model"], sort_keys=True) for c in configs}),
        "steps": sorted({s["total_steps"] for s in summaries}),
        "batch_size": sorted({c["trainer"]["batch_size"] for c in configs}),
        "seeds": sorted({c["seed"] for c in configs}),
        "hardware": {"cpu": cpu_name(), "cores": os.cpu_count(), "devices": devices,
                     "world_size": sorted({s["world_size"] for s in summaries}),
                     "torch": sorted({s["torch"] for s in summaries})},
        "wall_time_s": {"total": sum(s["wall_time_s"] for s in summaries),
                        "per_run_max": max((s["wall_time_s"] for s in summaries), default=0.0)},
        "commit": git,
        "commands": list(commands),
    }


def markdown(p: dict) -> str:
    lines = ["## Provenance", "",
             f"- runs: {p['runs']}; seeds: {p['seeds']}; steps per run: {p['steps']}; batch: {p['batch_size']}",
             f"- data: {'; '.join(p['data'])}",
             f"- model: {'; '.join(p['model'])}",
             f"- hardware: {p['hardware']['cpu']} ({p['hardware']['cores']} cores), devices "
             f"{p['hardware']['devices']}, DDP world size {p['hardware']['world_size']}, "
             f"torch {', '.join(p['hardware']['torch'])}",
             f"- wall time: {p['wall_time_s']['total']:.0f} s in all, at most {p['wall_time_s']['per_run_max']:.0f} s "
             "per run",
             f"- code: commit {', '.join(p['commit'])}"]
    if p["commands"]:
        lines += ["- commands:", *[f"  - `{c}`" for c in p["commands"]]]
    return "\n".join(lines) + "\n"
