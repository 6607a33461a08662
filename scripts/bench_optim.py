"""Time optimizer.step() of every registered optimizer against torch.optim.SGD(momentum, foreach) and
torch.optim.Adam(foreach) on the real parameter sets of MobileNetV1 (CIFAR) and ResNet-50, and report optimizer-state
bytes per parameter. Candidates are timed in interleaved rounds, in groups that each contain the torch baselines
(all of them at once would not fit in memory for ResNet-50); a ratio compares medians measured in the same group.

The fused (compiled) paths of the optimizers with a target are timed too, with the cost of their first step twice:
in this process, whose inductor cache starts empty (a cold compile), and in a fresh process that finds the cache
this one filled (what the next run of the same model pays).

    python -m scripts.bench_optim [--models mobilenet_v1 resnet50] [--devices cpu cuda] [--rounds 15]
    python -m scripts.bench_optim --quick      # MobileNetV1 only, 3 rounds, no fused paths: a check that it runs
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from funnel.train.records import cpu_name
from funnel.models import mobilenet_v1, resnet50
from funnel.optim import REGISTRY, build_optimizer
from funnel.optim.registry import takes_loss
from funnel.train.evaluation import has_eval_mode

ROOT = Path(__file__).resolve().parents[1]
MODELS = {"mobilenet_v1": lambda: mobilenet_v1((3, 32, 32), 10), "resnet50": lambda: resnet50((3, 224, 224), 1000)}
BASELINES = {
    "torch SGD momentum (foreach)": lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, foreach=True),
    "torch Adam (foreach)": lambda ps: torch.optim.Adam(ps, lr=1e-3, foreach=True),
}
# torch's own fused kernels exist on CUDA only: timed there beside the foreach baselines
CUDA_BASELINES = {
    "torch SGD momentum (fused)": lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, fused=True),
    "torch Adam (fused)": lambda ps: torch.optim.Adam(ps, lr=1e-3, fused=True),
}
# each optimizer's natural torch base, for the hypergradient targets
BASES = {
    "torch SGD (foreach)": lambda ps: torch.optim.SGD(ps, lr=1e-3, foreach=True),
    "torch SGD Nesterov (foreach)": lambda ps: torch.optim.SGD(ps, lr=1e-3, momentum=0.9, nesterov=True, foreach=True),
}
# (candidate, base, target, traffic bound). The bound: full-size tensor passes (reads + writes) of the candidate's
# least possible implementation (a reduction pass where one is needed, then one fused elementwise pass) over the
# passes of the base as torch's foreach code makes them:
# - torch SGD: w += -lr g (3). SGD-HD must keep g_{t-1} for <g_t, d_{t-1}>, and alpha needs every tensor's dot
#   product before any tensor moves: a dot pass (2), then read w, g, write w, d (4): 6 / 3.
# - torch SGD momentum: buf *= mu (2), buf += g (3), w += -lr buf (3): 8. Funnel(momentum): the scale's reduction
#   over g and nu (2), then read g, ema, w, nu, gain and write ema, w, nu, gain (9): 11 / 8. (The 2.2 compares
#   with an ideal single-pass SGD momentum, 5.)
# - torch SGD Nesterov: 8 + d = g + mu buf (3): 11. SGDN-HD: a dot pass (2), then read w, g, buf and write w, buf,
#   d (6): 8 / 11.
# - torch Adam (foreach): lerp (3), mul (2), addcmul (3), sqrt (2), div (2), add eps (2), addcdiv (4): 18.
#   Funnel(adam): reduction (2), then read g, ema, w, nu, gain, m, v and write all but g (13): 15 / 18.
#   Adam-HD: a dot pass (2), then read w, g, m, v and write w, m, v, d (8): 10 / 18.
TARGETS = [("funnel_momentum", "torch SGD momentum (foreach)", 1.6, 11 / 8),
           ("funnel_adam", "torch Adam (foreach)", 1.3, 15 / 18),
           ("sgd_hd", "torch SGD (foreach)", 2.2, 6 / 3), ("sgdn_hd", "torch SGD Nesterov (foreach)", 1.3, 8 / 11),
           ("adam_hd", "torch Adam (foreach)", 1.15, 10 / 18)]


def candidates(fused: tuple[str, ...] = tuple(t[0] for t in TARGETS)) -> dict:
    """Every registered optimizer on its foreach path where it has one (the peers Prodigy, D-Adaptation and DoG
    have only their own); Funneled Momentum also per-tensor (the CPU default); and the `fused` ones (by default
    the optimizers with a target) on their fused path. Each fused candidate compiles for minutes per model on a
    small CPU: the other Funnel inners share their code and are left out."""
    out = {}
    for name, spec in REGISTRY.items():
        if "foreach" in spec.signature().parameters:
            out[f"{name} (foreach)"] = lambda ps, name=name: build_optimizer(ps, name, foreach=True)
        else:
            out[f"{name} (as shipped)"] = lambda ps, name=name: build_optimizer(ps, name)
    out["funnel_momentum (per-tensor)"] = lambda ps: build_optimizer(ps, "funnel_momentum", foreach=False)
    for name in fused:
        out[f"{name} (fused)"] = lambda ps, name=name: build_optimizer(ps, name, fused=True)
    return out


def state_bytes(opt) -> int:
    def visit(value):
        if isinstance(value, torch.Tensor):
            return value.numel() * value.element_size()
        if isinstance(value, dict):
            return sum(visit(v) for v in value.values())
        return 0
    return sum(visit(st) for st in opt.state.values())


def step(opt) -> None:
    """One step; MoMo-type optimizers are given a loss value (theirs is a Polyak step: they need one)."""
    opt.step(loss=torch.tensor(1.0)) if takes_loss(opt) else opt.step()


def time_group(make: dict, model, device, rounds: int, warmup: int = 2) -> dict[str, dict]:
    base_params = [p.detach().to(device) for p in model.parameters()]
    grads = [torch.randn_like(p) * 1e-2 for p in base_params]
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    opts, first = {}, {}
    for name, factory in make.items():
        params = [p.clone().requires_grad_() for p in base_params]
        for p, g in zip(params, grads):
            p.grad = g  # shared: no optimizer here writes into its gradients
        opts[name] = factory(params)
        if has_eval_mode(opts[name]):
            opts[name].train()  # Schedule-Free refuses to step in its (initial) eval mode
        for k in range(warmup):  # state init, and compilation for the fused path
            sync()
            t0 = time.perf_counter()
            step(opts[name])
            sync()
            if k == 0:
                first[name] = time.perf_counter() - t0
    times = {name: [] for name in opts}
    for _ in range(rounds):
        for name, opt in opts.items():
            sync()
            t0 = time.perf_counter()
            step(opt)
            sync()
            times[name].append(time.perf_counter() - t0)
    n = sum(p.numel() for p in base_params)
    return {name: {"ms": 1e3 * statistics.median(t), "bytes_per_param": state_bytes(opts[name]) / n,
                   "first_step_s": first[name]} for name, t in times.items()}


def first_step_in_fresh_process(model_name: str, candidate: str, device: str) -> float:
    """Seconds of the first step of `candidate` in a new Python process (which reads the inductor cache that this
    one's environment points at)."""
    code = ("import torch, time; from scripts.bench_optim import MODELS, candidates, step; "
            f"torch.manual_seed(0); m = MODELS[{model_name!r}](); "
            f"ps = [p.detach().to({device!r}).clone().requires_grad_() for p in m.parameters()]; "
            "[setattr(p, 'grad', torch.randn_like(p) * 1e-2) for p in ps]; "
            f"opt = candidates()[{candidate!r}](ps); t = time.perf_counter(); step(opt); "
            f"torch.cuda.synchronize() if {device!r} == 'cuda' else None; print(time.perf_counter() - t)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    return float(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> str:
    """Runs the benchmark; returns the targets table (as written at the top of the report)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--devices", nargs="+", default=["cpu", "cuda"])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--group-size", type=int, default=5)
    parser.add_argument("--out", help="default results/bench/optim_step.md; with --quick, nothing is written")
    parser.add_argument("--quick", action="store_true", help="MobileNetV1 only, 3 rounds, no fused paths")
    parser.add_argument("--fused", nargs="*", default=[t[0] for t in TARGETS], choices=[t[0] for t in TARGETS],
                        help="the optimizers also timed on their fused path (default: every one with a target)")
    args = parser.parse_args(argv)
    if args.quick:
        args.models, args.rounds = ["mobilenet_v1"], 3
    elif args.out is None:
        args.out = "results/bench/optim_step.md"
    devices = [torch.device(d) for d in args.devices if d != "cuda" or torch.cuda.is_available()]
    # an empty inductor cache, so that the fused paths' first steps measure a cold compile
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="bench_optim_inductor_")
    torch.manual_seed(0)
    cands = candidates(fused=() if args.quick else tuple(args.fused))
    results = {}
    for model_name in args.models:
        model = MODELS[model_name]()
        for device in devices:
            rows = {}
            names = list(cands)
            for i in range(0, len(names), args.group_size):
                extra = CUDA_BASELINES if device.type == "cuda" else {}
                group = {**BASELINES, **BASES, **extra, **{n: cands[n] for n in names[i:i + args.group_size]}}
                measured = time_group(group, model, device, args.rounds)
                ref = {b: measured[b]["ms"] for b in (*BASELINES, *BASES)}
                for name in names[i:i + args.group_size]:
                    rows[name] = {**measured[name], **{f"x {b}": measured[name]["ms"] / ref[b] for b in ref}}
                for b in (*BASELINES, *BASES, *extra):
                    rows.setdefault(b, {**measured[b], **{f"x {c}": measured[b]["ms"] / ref[c] for c in ref}})
                print(f"{model_name}/{device}: group {i // args.group_size + 1} done", flush=True)
            for name in (n for n in names if n.endswith("(fused)")):
                rows[name]["first_step_cached_s"] = first_step_in_fresh_process(model_name, name, device.type)
            results[f"{model_name} on {device}"] = rows
    return write(results, args, devices)


def write(results: dict, args, devices) -> str:
    lines = ["# Optimizer step cost", "",
             f"`python -m scripts.bench_optim {' '.join(sys.argv[1:])}` on {datetime.date.today()}: "
             f"{cpu_name()} ({os.cpu_count()} cores), torch {torch.__version__}, Python {platform.python_version()}"
             + (f", {torch.cuda.get_device_name(0)}" if any(d.type == 'cuda' for d in devices) else "") + ".",
             f"Median of {args.rounds} interleaved steps after 2 warm-up steps; a ratio divides by the baseline timed "
             "in the same group. Bytes per parameter: all optimizer state over the number of parameters.", ""]
    summary = ["## Targets", "",
               "Traffic bound: full-size tensor passes of the least possible implementation over the base's (see "
               "TARGETS in the script); a target below it cannot be met by any implementation. Why a target is "
               "missed: results/bench/README.md.", "",
               "| where | optimizer | best path | ratio | base | target | traffic bound | |",
               "|---|---|---|---|---|---|---|---|"]
    for where, rows in results.items():
        lines += [f"## {where}", "", "ms / step: the median in the candidate's own group (groups run at different "
                  "times on a shared machine; compare the ratios).", "",
                  "| optimizer | ms / step | x SGD momentum | x Adam | state bytes / param | first step s |",
                  "|---|---|---|---|---|---|"]
        for name, r in sorted(rows.items(), key=lambda kv: kv[1]["ms"]):
            lines.append(f"| {name} | {r['ms']:.1f} | {r['x torch SGD momentum (foreach)']:.2f} | "
                         f"{r['x torch Adam (foreach)']:.2f} | {r['bytes_per_param']:.1f} | {r['first_step_s']:.2f} |")
        fused = {k: v for k, v in rows.items() if "first_step_cached_s" in v}
        if fused:
            lines += ["", "Compilation of the fused paths: the first step with an empty inductor cache (this process) "
                      "and in a fresh process that finds the cache filled (what the next run of this model pays); "
                      "later steps reuse the compiled graph.", "",
                      "| optimizer | first step, cold cache s | first step, cached s |", "|---|---|---|"]
            lines += [f"| {k} | {v['first_step_s']:.1f} | {v['first_step_cached_s']:.1f} |" for k, v in fused.items()]
        lines.append("")
        for cand, base, bound, traffic in TARGETS:
            paths = {k: v for k, v in rows.items() if k.startswith(cand + " (")}
            best = min(paths, key=lambda k: paths[k][f"x {base}"])
            ratio = paths[best][f"x {base}"]
            summary.append(f"| {where} | {cand} | {best[len(cand) + 1:]} | {ratio:.2f} | {base} | <= {bound} | "
                           f"{traffic:.2f} | {'met' if ratio <= bound else 'MISSED'} |")
    print("\n".join(summary))
    if args.out is None:
        return "\n".join(summary)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines[:4] + summary + [""] + lines[4:]) + "\n")
    out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")
    return "\n".join(summary)


if __name__ == "__main__":
    main()
