"""Where a result came from: data, model, steps, seeds, hardware, wall time, commit and the commands."""
from __future__ import annotations

import json

from experiments.runs import Run

HARDWARE = ("cpu", "cores", "gpus", "host", "world_size", "torch", "python")


def hardware(summaries: list[dict]) -> dict:
    """The machines the runs trained on, as each run recorded it in summary.json when it ran (never the machine
    building the report): each distinct one with its count of runs, and how many summaries predate the record."""
    machines: dict[str, dict] = {}
    for s in summaries:
        if "hardware" in s:
            machine = {k: s["hardware"].get(k) for k in HARDWARE}
            key = json.dumps(machine, sort_keys=True)
            machines.setdefault(key, {**machine, "runs": 0})["runs"] += 1
    recorded = sum(m["runs"] for m in machines.values())
    return {"machines": sorted(machines.values(), key=lambda m: -m["runs"]), "not_recorded": len(summaries) - recorded,
            "devices": sorted({s["device"] for s in summaries if "device" in s})}


def machine_text(m: dict) -> str:
    gpus = ", ".join(f"{n} × {g}" for g, n in sorted({g: m["gpus"].count(g) for g in m["gpus"]}.items())) \
        if m["gpus"] else "no GPU"
    return (f"{m['cpu']} ({m['cores']} cores), {gpus}, host {m['host']}, DDP world size {m['world_size']}, "
            f"torch {m['torch']}, Python {m['python']}: {m['runs']} runs")


def hardware_text(hw: dict) -> list[str]:
    lines = [f"  - {machine_text(m)}" for m in hw["machines"]]
    if hw["not_recorded"]:
        lines.append(f"  - not recorded: {hw['not_recorded']} runs (their summary.json predates the hardware record)")
    return lines


def provenance(runs: list[Run], commands=()) -> dict:
    summaries = [r.summary for r in runs if r.summary]
    configs = [s["config"] for s in summaries]
    # an installed funnel-run records its version instead of a commit
    git = sorted({f"{s['git']['commit'] or 'funnel-optim ' + str(s['git'].get('version'))}"
                  f"{'+dirty' if s['git']['dirty'] else ''}" for s in summaries})
    return {
        "runs": len(runs),
        "data": sorted({json.dumps({k: v for k, v in c["dataset"].items() if k not in ("root", "mnist_5k_path")},
                                   sort_keys=True) for c in configs}),
        "model": sorted({json.dumps(c["model"], sort_keys=True) for c in configs}),
        "steps": sorted({s["total_steps"] for s in summaries}),
        "batch_size": sorted({c["trainer"]["batch_size"] for c in configs}),
        "seeds": sorted({c["seed"] for c in configs}),
        "hardware": hardware(summaries),
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
             f"- hardware, as each run recorded it when it trained (devices {p['hardware']['devices']}):",
             *hardware_text(p["hardware"]),
             f"- wall time: {p['wall_time_s']['total']:.0f} s in all, at most {p['wall_time_s']['per_run_max']:.0f} s "
             "per run",
             f"- code: commit {', '.join(p['commit'])}"]
    if p["commands"]:
        lines += ["- commands:", *[f"  - `{c}`" for c in p["commands"]]]
    return "\n".join(lines) + "\n"
