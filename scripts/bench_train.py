"""Training-step throughput of the runner against a bare hand-written torch loop on the same data, model, batch and
optimizer, so that the runner's own overhead (data, logging, optimizer stats, records) is visible; and Funnel's share
of a training step: the same runner with Funneled Momentum (its default path and fused) against torch's SGD momentum.
The runner logs every 50 steps (train loss, lr, scales and gain quantiles to metrics.jsonl); nothing evaluates.
Rounds alternate in one process; the first 50 steps of every round are warm-up (and hold the fused path's compile).

    python -m scripts.bench_train [--workloads logreg small_cnn mobilenet_v1] [--rounds 4]
    python -m scripts.bench_train --quick      # the small CNN, 1 round of 100 steps: a check that it runs
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import pickle
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from funnel.train.records import cpu_name
from funnel.data.base import epoch_batches
from funnel.data.sources import DEBIAN_FASHION_MNIST
from funnel.train import resolvers
from funnel.train.build import build_model, build_optimizer, instantiate
from funnel.train.loop import train

ROOT = Path(__file__).resolve().parents[1]
WINDOW = 50  # steps per logged window (the runner logs every 50 steps)


def fake_cifar(root: Path, n: int = 2000) -> None:
    """CIFAR-10 in torchvision's format with random images: MobileNetV1's cost does not depend on the pixels."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]:
        with open(folder / name, "wb") as f:
            pickle.dump({"data": rng.integers(0, 256, (n // 5, 3072), dtype=np.uint8),
                         "labels": rng.integers(0, 10, n // 5).tolist()}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [str(k) for k in range(10)]}, f)


def workloads(tmp: Path) -> dict[str, tuple[list[str], int, str]]:
    """name -> (overrides, steps per round, description)"""
    fashion = DEBIAN_FASHION_MNIST.exists() or (ROOT / "data" / "FashionMNIST" / "raw").exists()
    base = "fashion_mnist" if fashion else "mnist_5k"
    fake_cifar(tmp / "cifar")
    return {
        "logreg": (["experiment=rotated_mnist", "arm=rotated_funnel", f"dataset.base={base}",
                    "trainer.batch_size=10000", "trainer.epochs=100"], 200,
                   f"logistic regression, rotated-noisy {base}, batch 10,000, Funnel(AdaGrad)"),
        # epochs only bound the plan (the steps per round decide): the 5,000 digits hold 24 steps per epoch
        "small_cnn": (["experiment=cnn_fashion", "arm=cnn_funnel", "trainer.epochs=20"] if fashion else
                      ["experiment=cnn_fashion", "arm=cnn_funnel", "dataset=rotated_mnist", "dataset.base=mnist_5k",
                       "trainer.epochs=20"],
                      200, "small CNN, Fashion-MNIST, batch 128, Funneled Momentum"),
        "mobilenet_v1": (["experiment=mobilenet_cifar10", "arm=cifar_funnel", f"dataset.root={tmp / 'cifar'}",
                          "dataset.val_size=100", "trainer.epochs=30"], 100,
                         "MobileNetV1 (CIFAR stem), CIFAR-10-format data, batch 50, crop+flip, Funneled Momentum"),
    }


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose, initialize_config_dir
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return hydra_compose("config", overrides=overrides)


def runner_round(cfg, steps: int, run_dir: Path) -> list[float]:
    """Per-step seconds of the runner, one value per logged window after the first."""
    train(cfg, run_dir)
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["time/step_s"] for r in records if "time/step_s" in r][1:]


def bare_round(cfg, steps: int) -> list[float]:
    """The same model, optimizer, data and batches as the runner, in a plain loop."""
    torch.manual_seed(cfg.seed)
    data = instantiate(cfg.dataset)
    model = build_model(cfg.model, data)
    optimizer = build_optimizer(cfg.optimizer, model.parameters())
    train_set = data.phases[0].train
    batches = epoch_batches(len(train_set), cfg.trainer.batch_size, cfg.trainer.drop_last, cfg.seed, 0, 0)
    windows, t0 = [], time.perf_counter()
    for step in range(steps):
        idx = batches[step % len(batches)]
        x, y = train_set.x[idx], train_set.y[idx]
        if data.train_transform is not None:
            x = data.train_transform(x, torch.Generator().manual_seed(step))
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if (step + 1) % WINDOW == 0:
            loss.item()  # the runner reads its loss once per window too
            now = time.perf_counter()
            windows.append((now - t0) / WINDOW)
            t0 = now
    return windows[1:]


# Funnel's share: the arm of each workload's torch momentum with the same lr, momentum and weight decay
TORCH_MOMENTUM_ARM = {"small_cnn": "arm=cnn_momentum", "mobilenet_v1": "arm=cifar_momentum"}
SHARE_SIDES = {"torch momentum": [], "Funnel (default path)": [], "Funnel (fused)": ["optimizer.fused=true"]}
SHARE_TARGET = 0.03  # at most 3% more time per training step than the runner with torch momentum


def timing_overrides(steps: int, every: int = WINDOW) -> list[str]:
    """A run of `steps` steps that logs its step time every `every` steps and neither evaluates nor checkpoints."""
    return ["logger=none", "trainer.progress_bar=false", "trainer.resume=false", f"trainer.max_steps={steps}",
            f"trainer.log_every={every}", "trainer.eval_every=1000000", "trainer.eval_at_start=false",
            "trainer.checkpoint_every=0", "trainer.num_workers=0"]


def funnel_share(name: str, overrides: list[str], steps: int, rounds: int, tmp: Path) -> dict:
    """Per-step seconds of the runner with Funnel (default path, fused) and with torch momentum, in rotating order."""
    arm = next(o for o in overrides if o.startswith("arm="))
    sides = {side: compose([o for o in overrides if o != arm] + [TORCH_MOMENTUM_ARM[name]] + timing_overrides(steps))
             if side == "torch momentum" else compose(overrides + extra + timing_overrides(steps))
             for side, extra in SHARE_SIDES.items()}
    windows = {side: [] for side in sides}
    order = list(sides)
    for r in range(rounds):
        for side in order[r % 3:] + order[:r % 3]:  # each side first once every three rounds
            windows[side] += runner_round(sides[side], steps, tmp / f"share-{name}-{r}-{order.index(side)}")
    base = statistics.median(windows["torch momentum"])
    return {side: {"step_s": statistics.median(w), "extra": statistics.median(w) / base - 1, "windows": w}
            for side, w in windows.items()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workloads", nargs="+", default=["logreg", "small_cnn", "mobilenet_v1"])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--out", help="default results/bench/train_step.md; with --quick, nothing is written")
    parser.add_argument("--quick", action="store_true", help="the small CNN only, 1 round of 100 steps")
    args = parser.parse_args(argv)
    if args.quick:
        args.workloads, args.rounds = ["small_cnn"], 1
    elif args.out is None:
        args.out = "results/bench/train_step.md"
    resolvers.register()
    results, shares = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name, (overrides, steps, description) in workloads(tmp).items():
            if name not in args.workloads:
                continue
            steps = 2 * WINDOW if args.quick else steps
            cfg = compose(overrides + timing_overrides(steps))
            bare, runner = [], []
            for r in range(args.rounds):
                # ABBA order: a machine that slows down (or speeds up) steadily over the rounds favours neither side
                for side in ("bare", "runner") if r % 2 == 0 else ("runner", "bare"):
                    if side == "bare":
                        bare += bare_round(cfg, steps)
                    else:
                        runner += runner_round(cfg, steps, tmp / f"{name}-{r}")
            b, m = statistics.median(bare), statistics.median(runner)
            batch = cfg.trainer.batch_size
            results[name] = {"description": description, "batch": batch, "bare_step_s": b, "runner_step_s": m,
                             "bare_samples_per_s": batch / b, "runner_samples_per_s": batch / m,
                             "runner_over_bare_time": m / b, "windows": {"bare": bare, "runner": runner}}
            print(f"{name}: bare {1e3 * b:.1f} ms/step, runner {1e3 * m:.1f} ms/step, ratio {m / b:.3f}", flush=True)
            if name in TORCH_MOMENTUM_ARM:
                rounds = 1 if args.quick else max(args.rounds, 3)
                shares[name] = {"description": description,
                                "sides": funnel_share(name, overrides, steps, rounds, tmp)}
                print(name, {k: f"{1e3 * v['step_s']:.1f} ms ({100 * v['extra']:+.1f}%)"
                             for k, v in shares[name]["sides"].items()}, flush=True)
    write(results, shares, args)


TARGETS = {"logreg": ("runner samples/s over bare", 0.9, ">="), "small_cnn": ("runner time over bare", 1.05, "<="),
           "mobilenet_v1": ("runner time over bare", 1.05, "<=")}


def bootstrap_extra(windows: list[float], base: list[float], draws: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% percentile-bootstrap interval of median(windows) / median(base) - 1, resampling each side's windows."""
    rng = np.random.default_rng(seed)
    w, b = np.asarray(windows), np.asarray(base)
    ratios = np.median(rng.choice(w, (draws, len(w))), axis=1) / np.median(rng.choice(b, (draws, len(b))), axis=1)
    return float(np.quantile(ratios, 0.025) - 1), float(np.quantile(ratios, 0.975) - 1)


def write(results: dict, shares: dict, args) -> None:
    if args.out is None:
        return
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    lines = ["# Training-step throughput: the runner against a bare loop", "",
             f"`python -m scripts.bench_train {' '.join(sys.argv[1:])}` on {datetime.date.today()}: {cpu_name()} "
             f"({os.cpu_count()} cores), torch {torch.__version__}, Python {platform.python_version()}, CPU only.",
             f"{args.rounds} rounds per side, alternating in ABBA order; medians over {WINDOW}-step windows after the "
             "first window of each round. The runner logs every 50 steps (loss, lr, per-layer scale and gain "
             "quantiles); neither side evaluates.", "",
             "| workload | batch | bare ms/step | runner ms/step | bare samples/s | runner samples/s | measure | "
             "value | target | |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        label, bound, op = TARGETS[name]
        value = r["runner_samples_per_s"] / r["bare_samples_per_s"] if op == ">=" else r["runner_over_bare_time"]
        met = value >= bound if op == ">=" else value <= bound
        lines.append(f"| {r['description']} | {r['batch']} | {1e3 * r['bare_step_s']:.1f} | "
                     f"{1e3 * r['runner_step_s']:.1f} | {r['bare_samples_per_s']:.0f} | "
                     f"{r['runner_samples_per_s']:.0f} | {label} | {value:.3f} | {op} {bound} | "
                     f"{'met' if met else 'MISSED'} |")
    lines += ["", "## Funnel's share of a training step", "",
              "The same runner with torch.optim.SGD(momentum) (the workload's momentum arm: same lr, momentum and "
              f"weight decay) and with Funneled Momentum on its default path and fused; {max(args.rounds, 3)} rounds "
              "per side in rotating order, medians over the windows after each round's first (which holds the fused "
              "path's compilation). Extra time: the ratio of medians minus 1, with a 95% bootstrap interval over the "
              f"windows. Target: at most {100 * SHARE_TARGET:.0f}% more time per step than torch momentum; met when "
              "the interval lies below it, missed when above, unresolved when it spans it.", "",
              "| workload | windows per side | torch momentum ms/step | Funnel, default path ms/step | extra | "
              "Funnel, fused ms/step | extra | |", "|---|---|---|---|---|---|---|---|"]
    for r in shares.values():
        sides = r["sides"]
        base = sides["torch momentum"]
        cells, verdicts = [], []
        for side in ("Funnel (default path)", "Funnel (fused)"):
            v = sides[side]
            low, high = bootstrap_extra(v["windows"], base["windows"])
            cells.append(f"{1e3 * v['step_s']:.1f} | {100 * v['extra']:+.1f}% [{100 * low:+.1f}, {100 * high:+.1f}]")
            verdicts.append("met" if high <= SHARE_TARGET else "MISSED" if low > SHARE_TARGET else "unresolved")
        best = "met" if "met" in verdicts else "unresolved" if "unresolved" in verdicts else "MISSED"
        lines.append(f"| {r['description']} | {len(base['windows'])} | {1e3 * base['step_s']:.1f} | {cells[0]} | "
                     f"{cells[1]} | {best} |")
    out.write_text("\n".join(lines) + "\n")
    out.with_suffix(".json").write_text(json.dumps({"runner_vs_bare": results, "funnel_share": shares}, indent=2)
                                        + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
