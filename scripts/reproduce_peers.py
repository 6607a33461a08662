"""Funnel against what users would pick instead (Schedule-Free SGD/AdamW and its wrapper, Prodigy, D-Adaptation
Adam, DoG, Mechanic, MoMo) and the plain baseline, under the tuning protocol, end to end: one study per workload
(configs/tuning/peers_<workload>.yaml: every method the same number of Halton trials over its own search space,
edges extended, finals and a one-shot column at seeds 0-4), then the report in results/peers and the claims ledger.

    python scripts/reproduce_peers.py [--workloads rotated_mnist5k rotated_fashion cnn_fashion] [--budget 8]
Environment, as for the shell reproductions: PY, RUNS (default multirun), RESULTS (default results), EXTRA, SEEDS,
LOGGER (none, the default, or wandb: a W&B run per study run, offline unless EXTRA=logger.mode=online).
"""
from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORKLOADS = ("rotated_mnist5k", "rotated_fashion", "cnn_fashion")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=WORKLOADS)
    parser.add_argument("--budget", type=int, help="trials per method (default: the study file's)")
    parser.add_argument("--methods", nargs="+", help="only these methods (default: every method of each study)")
    args = parser.parse_args(argv)
    python = os.environ.get("PY", sys.executable)
    runs, results = Path(os.environ.get("RUNS", "multirun")) / "peers", Path(os.environ.get("RESULTS", "results"))
    for workload in args.workloads:
        command = [python, "-m", "experiments.protocol", f"configs/tuning/peers_{workload}.yaml",
                   "--root", str(runs / workload)]
        command += ["--budget", str(args.budget)] if args.budget else []
        command += ["--methods", *args.methods] if args.methods else []
        command += ["--seeds", os.environ["SEEDS"]] if os.environ.get("SEEDS") else []
        command += ["--logger", os.environ.get("LOGGER") or "none"]
        command += ["--extra", *shlex.split(os.environ.get("EXTRA", ""))]
        print("+", " ".join(command), flush=True)
        subprocess.run(command, cwd=ROOT, check=True)
    subprocess.run([python, "-m", "experiments.peers", str(runs), "--out", str(results / "peers")], cwd=ROOT,
                   check=True)
    subprocess.run([python, "-m", "experiments.claims", "--results", str(results), "--out",
                    str(results / "claims.md")], cwd=ROOT, check=True)


if __name__ == "__main__":
    main()
