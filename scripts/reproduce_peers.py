"""Funnel against what users would pick instead (Schedule-Free SGD/AdamW, Prodigy, D-Adaptation Adam, DoG) and the
plain baseline, under one protocol, end to end: runs, selection, report in results/peers.

Protocol, the same for every method on every workload:
  - one-shot: the method's documented defaults (the registry's), seeds 0..S-1;
  - tuned: a grid of the same size for every method, lr x {1/3, 1, 3} around its default, at seed 0, chosen on the
    validation metric of the workload; then seeds 0..S-1 at the chosen lr;
  - the same step budget for all (the workload's), and no schedule.
Compute on a 2-core CPU with S=5 (210 runs, measured): about 15 min for rotated Fashion-MNIST, 3 min for
MNIST-5k and 50 min for the CNN; 70 min in all.

    python scripts/reproduce_peers.py [--workloads rotated_fashion rotated_mnist5k cnn_fashion] [--seeds 5]
Environment, as for the shell reproductions: PY, RUNS (default multirun), RESULTS (default results), EXTRA.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
WORKLOADS = {
    "rotated_fashion": dict(experiment="peers_rotated_fashion", metric="val/current/top1", reduce="mean",
                            methods=["funnel_adagrad", "adagrad"]),
    "rotated_mnist5k": dict(experiment="peers_rotated_mnist5k", metric="val/current/top1", reduce="mean",
                            methods=["funnel_adagrad", "adagrad"]),
    "cnn_fashion": dict(experiment="peers_cnn_fashion", metric="val/top1", reduce="final",
                        methods=["funnel_momentum", "momentum"]),
}
PEERS = ["sf_sgd", "sf_adamw", "prodigy", "dadapt_adam", "dog"]
GRID = (1 / 3, 1.0, 3.0)


def default_lr(experiment: str, method: str) -> float:
    """The lr a method gets with no tuning: its registry default, as the composed config has it."""
    from hydra import compose, initialize_config_dir

    from funnel.train import resolvers
    resolvers.register()
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return float(compose("config", overrides=[f"experiment={experiment}", f"optimizer={method}"]).optimizer.lr)


def run(python: str, overrides: list[str]) -> None:
    command = [python, "run.py", "-m", *overrides, "logger=none", "trainer.progress_bar=false",
               *shlex.split(os.environ.get("EXTRA", ""))]
    print("+", " ".join(command), flush=True)
    subprocess.run(command, cwd=ROOT, check=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    parser.add_argument("--methods", nargs="+", help="a subset of the methods (default: all)")
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args(argv)
    python = os.environ.get("PY", sys.executable)
    runs, results = Path(os.environ.get("RUNS", "multirun")) / "peers", Path(os.environ.get("RESULTS", "results"))
    protocol_path = runs / "protocol.json"
    protocol = json.loads(protocol_path.read_text()) if protocol_path.exists() else {}
    seeds = ",".join(str(s) for s in range(1, args.seeds))
    for workload in args.workloads:
        spec = WORKLOADS[workload]
        entry = protocol.setdefault(workload, {"experiment": spec["experiment"], "metric": spec["metric"],
                                               "reduce": spec["reduce"], "seeds": args.seeds, "methods": {}})
        for method in [m for m in spec["methods"] + PEERS if not args.methods or m in args.methods]:
            base = [f"experiment={spec['experiment']}", f"optimizer={method}", f"label={method}"]
            where = runs / workload / method
            lr0 = default_lr(spec["experiment"], method)
            grid = [lr0 * f for f in GRID]
            run(python, base + ["seed=0", "optimizer.lr=" + ",".join(repr(v) for v in grid),
                                f"hydra.sweep.dir={where / 'grid'}"])
            subprocess.run([python, "-m", "experiments.select", str(where / "grid"), "--metric", spec["metric"],
                            "--reduce", spec["reduce"], "--out", str(where / "selection")], cwd=ROOT, check=True)
            chosen = json.loads((where / "selection.json").read_text())["best"]["values"]["optimizer.lr"]
            if seeds:
                for lr, column in ((lr0, "one_shot"), (chosen, "tuned")):
                    if column == "one_shot" or chosen != lr0:  # tuned at the default lr is the one-shot runs
                        run(python, base + [f"seed={seeds}", f"optimizer.lr={lr!r}",
                                            f"hydra.sweep.dir={where / column}"])
            entry["methods"][method] = {"default_lr": lr0, "grid": grid, "chosen_lr": chosen}
            protocol_path.parent.mkdir(parents=True, exist_ok=True)
            protocol_path.write_text(json.dumps(protocol, indent=2) + "\n")
    subprocess.run([python, "-m", "experiments.peers", str(runs), "--out", str(results / "peers")], cwd=ROOT,
                   check=True)


if __name__ == "__main__":
    main()
