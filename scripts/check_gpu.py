"""What nothing else checks on a GPU, in one command (`bash scripts/check_gpu.sh`, <= 8 minutes on one GPU), written
to results/bench/gpu.md with the device's name:

1. every path (per-tensor, foreach, fused) of Funnel and of the hypergradient optimizers agrees with the float64
   reference on a small model, on the device;
2. bf16 parameters keep fp32 optimizer state;
3. the optimizer step cost (scripts/bench_optim.py) on the device, against torch's foreach and fused optimizers;
4. the runner's steps/s for MobileNetV1-CIFAR on synthetic CIFAR-shaped data at batch 50 and 128, with and without
   trainer.compile, and the GPU-hours of the Table 1 study projected from it;
5. a 2-rank nccl DDP run of the runner, where the machine has two GPUs (skipped with a message otherwise).

`--cpu` runs the same checks on the CPU with small settings (no compile, the benchmark's quick mode): a dry run that
CI runs so that the GPU run cannot fail on a typo. It writes nothing unless --out is given.

    bash scripts/check_gpu.sh                     # on a machine with a CUDA GPU
    bash scripts/check_gpu.sh --cpu --out /tmp/gpu.md
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from experiments.protocol import Study, load_space
from funnel.train.records import cpu_name
from funnel.optim import SGDHD, AdamHD, Funnel
from funnel.optim.reference import FunnelReference, HypergradientReference

ROOT = Path(__file__).resolve().parents[1]
SHAPES = [(16, 3, 3, 3), (16,), (16,), (32, 16, 3, 3), (32,), (10, 32), (10,)]  # a small CNN's tensors
AGREEMENT_STEPS = 10
TOLERANCE = dict(rtol=1e-9, atol=1e-11)  # float64 on the device against the float64 reference
FUNNEL_CASES = {"Funnel(momentum)": dict(momentum=0.9, inner="sgd"),
                "Funnel(adam), unnormalized, Nesterov": dict(momentum=0.9, nesterov=True, inner="adam",
                                                            normalize_gains=False, normalize_scale=False)}
HD_CASES = {"SGDN-HD": (SGDHD, "sgd", dict(momentum=0.9, nesterov=True, hypergrad_lr=1e-3)),
            "Adam-HD": (AdamHD, "adam", dict(hypergrad_lr=1e-4))}
PATHS = {"per-tensor": dict(foreach=False), "foreach": dict(foreach=True), "fused": dict(fused=True)}
TABLE1_STUDY = ROOT / "configs" / "tuning" / "table1_mobilenet.yaml"


def tensors(device, dtype=torch.float64, seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=gen, dtype=torch.float64).to(device=device, dtype=dtype).requires_grad_()
            for s in SHAPES]


def gradients(steps: int, seed: int = 1) -> list[list[torch.Tensor]]:
    """Per step, one CPU float64 gradient per tensor: a fixed drift plus noise (persistent and flipping signs)."""
    gen = torch.Generator().manual_seed(seed)
    drift = [torch.randn(s, generator=gen, dtype=torch.float64) for s in SHAPES]
    return [[d + 0.7 * torch.randn(s, generator=gen, dtype=torch.float64) for d, s in zip(drift, SHAPES)]
            for _ in range(steps)]


def agreement(device) -> list[dict]:
    """Max |difference| of each path's parameters from the float64 reference after AGREEMENT_STEPS steps."""
    rows = []
    stream = gradients(AGREEMENT_STEPS)
    cases = [(name, lambda ps, kw=kw, **path: Funnel(ps, lr=0.05, gamma_p=1e-2, gamma_s=1e-2, **kw, **path),
              lambda ps, kw=kw: FunnelReference([{"params": ps}], lr=0.05, gamma_p=1e-2, gamma_s=1e-2, **kw))
             for name, kw in FUNNEL_CASES.items()]
    cases += [(name, lambda ps, cls=cls, kw=kw, **path: cls(ps, lr=0.01, **kw, **path),
               lambda ps, base=base, kw=kw: HypergradientReference([{"params": ps}], base, lr=0.01, **kw))
              for name, (cls, base, kw) in HD_CASES.items()]
    for name, make, make_reference in cases:
        reference = make_reference(tensors("cpu"))
        for grads in stream:
            reference.step([grads])
        expected = reference.groups[0]["params"]
        for path, kw in PATHS.items():
            params = tensors(device)
            opt = make(params, **kw)
            for grads in stream:
                for p, g in zip(params, grads):
                    p.grad = g.to(device)
                opt.step()
            diff = max(float((p.detach().cpu() - e).abs().max()) for p, e in zip(params, expected))
            ok = all(torch.allclose(p.detach().cpu(), e, **TOLERANCE) for p, e in zip(params, expected))
            rows.append({"optimizer": name, "path": path, "max_abs_diff": diff, "ok": ok})
    return rows


def bf16_state(device) -> dict:
    """Funnel and Adam-HD on bf16 parameters: every floating state tensor is fp32, and a step moves the weights."""
    out = {}
    for name, make in {"Funnel(momentum)": lambda ps: Funnel(ps, lr=0.1, momentum=0.9),
                       "Funnel(momentum), fused": lambda ps: Funnel(ps, lr=0.1, momentum=0.9, fused=True),
                       "Adam-HD": lambda ps: AdamHD(ps, lr=1e-2)}.items():
        params = tensors(device, torch.bfloat16)
        before = [p.detach().clone() for p in params]
        opt = make(params)
        for grads in gradients(3):
            for p, g in zip(params, grads):
                p.grad = g.to(device=device, dtype=torch.bfloat16)
            opt.step()
        dtypes = {t.dtype for st in opt.state.values() for t in floating_tensors(st)}
        moved = any(not torch.equal(a, b) for a, b in zip(before, params))
        out[name] = {"state_dtypes": sorted(str(d) for d in dtypes), "ok": dtypes == {torch.float32} and moved}
    return out


def floating_tensors(state: dict) -> list[torch.Tensor]:
    """Every floating tensor of a (nested) optimizer state."""
    out = []
    for value in state.values():
        if isinstance(value, dict):
            out += floating_tensors(value)
        elif isinstance(value, torch.Tensor) and value.is_floating_point():
            out.append(value)
    return out


def table1_runs() -> tuple[int, int]:
    """(runs, steps per run) of the Table 1 study before any grid extension: each tuned method's budget, each grid's
    size, the finals of every method at every seed."""
    import yaml
    study = Study.load(TABLE1_STUDY)
    search_dir = Path(study.search_dir) if study.search_dir else None
    trials = 0
    for method in study.methods.values():
        space = load_space(method["space"], search_dir)
        if space.grid:
            trials += math.prod(len(k.points) for k in space.knobs)
        elif space.knobs:
            trials += study.budget
    runs = trials + len(study.seeds) * (len(study.methods) + len(study.ablations))
    experiment = yaml.safe_load((ROOT / "configs" / "experiment" / f"{study.experiment}.yaml").read_text())
    trainer = experiment["trainer"]
    steps = trainer["epochs"] * (45_000 // trainer["batch_size"])  # 45,000 training images after the val split
    return runs, steps


def runner_throughput(device: str, cpu: bool, tmp: Path) -> list[dict]:
    """The runner's seconds per step, MobileNetV1-CIFAR with Funneled Momentum on random CIFAR-format data."""
    from scripts.bench_train import compose, fake_cifar, runner_round, timing_overrides
    from funnel.train import resolvers
    resolvers.register()
    fake_cifar(tmp / "cifar")
    steps, every = (8, 4) if cpu else (300, 50)
    narrow = ["model.width=0.25"] if cpu else []  # the dry run checks that it runs, not how fast: a quarter width
    rows = []
    for batch in (50, 128):
        for compiled in ((False,) if cpu else (False, True)):
            cfg = compose(["experiment=mobilenet_cifar10", "arm=cifar_funnel", f"dataset.root={tmp / 'cifar'}",
                           "dataset.val_size=100", f"trainer.batch_size={batch}", f"trainer.compile={compiled}",
                           f"trainer.device={device}", *timing_overrides(steps, every), *narrow])
            step_s = statistics.median(runner_round(cfg, steps, tmp / f"throughput-{batch}-{compiled}"))
            rows.append({"batch": batch, "compile": compiled, "step_s": step_s, "steps_per_s": 1 / step_s,
                         "samples_per_s": batch / step_s})
    return rows


def ddp_check(tmp: Path) -> dict:
    """Two ranks over nccl with the runner (experiment=quick), where there are two GPUs."""
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count < 2:
        return {"ran": False, "why": f"skipped: this machine has {count} CUDA device(s); the check needs 2"}
    run_dir = tmp / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "run.py",
               "experiment=quick", "logger=none", "trainer.progress_bar=false", "trainer.max_steps=100",
               "trainer.device=cuda", f"hydra.run.dir={run_dir}"]
    t0 = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    summary = run_dir / "summary.json"
    status = json.loads(summary.read_text()).get("status") if summary.exists() else None
    return {"ran": True, "ok": done.returncode == 0 and status == "finished", "returncode": done.returncode,
            "status": status, "seconds": time.perf_counter() - t0, "tail": done.stdout[-2000:] + done.stderr[-2000:]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu", action="store_true", help="the dry run: every check on the CPU, small settings")
    parser.add_argument("--out", help="the report (default results/bench/gpu.md on a GPU; with --cpu, stdout only)")
    parser.add_argument("--skip-bench", action="store_true", help="leave out the optimizer step benchmark")
    args = parser.parse_args(argv)
    if not args.cpu and not torch.cuda.is_available():
        print("check_gpu: no CUDA device here. Run it on a machine with a GPU, or pass --cpu for the dry run.")
        return 2
    device = "cpu" if args.cpu else "cuda"
    out = args.out or (None if args.cpu else str(ROOT / "results" / "bench" / "gpu.md"))
    name = "the CPU" if args.cpu else torch.cuda.get_device_name(0)
    started, timings, report = time.perf_counter(), {}, {}

    def timed(key, fn, *a):
        t0 = time.perf_counter()
        report[key] = fn(*a)
        timings[key] = time.perf_counter() - t0
        print(f"check_gpu: {key} done in {timings[key]:.0f} s", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        timed("agreement", agreement, torch.device(device))
        timed("bf16", bf16_state, torch.device(device))
        if not args.skip_bench:
            bench_out = None if args.cpu else str(ROOT / "results" / "bench" / "optim_step_cuda.md")
            timed("bench", run_bench, args.cpu, bench_out)
        timed("throughput", runner_throughput, device, args.cpu, tmp)
        timed("ddp", ddp_check, tmp)
    text = render(report, timings, name, args, time.perf_counter() - started)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text)
        Path(out).with_suffix(".json").write_text(json.dumps({"device": name, "timings_s": timings, **report},
                                                             indent=2, default=str) + "\n")
        print(f"wrote {out}")
    else:
        print(text)
    failed = [r for r in report["agreement"] if not r["ok"]] + [k for k, v in report["bf16"].items() if not v["ok"]]
    if report["ddp"].get("ran") and not report["ddp"]["ok"]:
        failed.append("ddp")
    if failed:
        print(f"check_gpu: FAILED: {failed}")
    return 1 if failed else 0


def run_bench(cpu: bool, out: str | None) -> str:
    """bench_optim on the device (quick on the CPU); returns its targets table."""
    from scripts import bench_optim
    argv = ["--devices", "cpu", "--quick"] if cpu else \
        ["--devices", "cuda", "--rounds", "10", "--fused", "funnel_momentum", "funnel_adam", "--out", out]
    return bench_optim.main(argv)


def render(report: dict, timings: dict, name: str, args, total_s: float) -> str:
    runs, steps = table1_runs()
    lines = ["# GPU check" + (" (CPU dry run)" if args.cpu else ""), "",
             f"`bash scripts/check_gpu.sh {' '.join(sys.argv[1:])}` on {datetime.date.today()}: {name}, "
             f"torch {torch.__version__}" + (f", CUDA {torch.version.cuda}" if not args.cpu else "")
             + f", host {cpu_name()} ({os.cpu_count()} cores), Python {platform.python_version()}; "
             f"{total_s / 60:.1f} minutes in all.", "",
             f"## 1. Paths against the float64 reference ({AGREEMENT_STEPS} steps, float64 on the device)", "",
             "| optimizer | path | max abs difference | within rtol 1e-9 |", "|---|---|---|---|"]
    lines += [f"| {r['optimizer']} | {r['path']} | {r['max_abs_diff']:.1e} | {'yes' if r['ok'] else 'NO'} |"
              for r in report["agreement"]]
    lines += ["", "## 2. bf16 parameters keep fp32 state", "", "| optimizer | state dtypes | ok |", "|---|---|---|"]
    lines += [f"| {k} | {', '.join(v['state_dtypes'])} | {'yes' if v['ok'] else 'NO'} |"
              for k, v in report["bf16"].items()]
    lines += ["", "## 3. Optimizer step cost", ""]
    if "bench" in report:
        where = "the quick mode on the CPU" if args.cpu else "results/bench/optim_step_cuda.md holds the whole table"
        lines += [f"`scripts/bench_optim.py` ({where}):", "", report["bench"].strip()]
    else:
        lines.append("Left out (--skip-bench).")
    lines += ["", "## 4. Runner throughput: MobileNetV1 (CIFAR stem), Funneled Momentum, random CIFAR-format data", "",
              "| batch | trainer.compile | ms / step | steps / s | samples / s | Table 1 study, GPU-hours |",
              "|---|---|---|---|---|---|"]
    for r in report["throughput"]:
        hours = runs * steps * 50 / r["batch"] * r["step_s"] / 3600  # the same epochs at this batch size
        lines.append(f"| {r['batch']} | {r['compile']} | {1e3 * r['step_s']:.1f} | {r['steps_per_s']:.1f} | "
                     f"{r['samples_per_s']:.0f} | {hours:.0f} |")
    lines += ["", f"Projection: {runs} runs (configs/tuning/table1_mobilenet.yaml before any grid extension) of "
              f"{steps:,} steps at batch 50 (the same epochs at batch 128), at the measured step time; evaluation "
              "and checkpoints not counted." + (" On the CPU dry run the numbers say nothing about a GPU: MobileNetV1 "
                                                "at a quarter width, and trainer.compile is not run." if args.cpu
                                                else ""), "",
              "## 5. Two-rank DDP over nccl", ""]
    ddp = report["ddp"]
    lines.append(ddp["why"] if not ddp.get("ran") else
                 f"{'finished' if ddp['ok'] else 'FAILED'}: return code {ddp['returncode']}, status {ddp['status']}, "
                 f"{ddp['seconds']:.0f} s.")
    lines += ["", "Seconds per section: " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()) + "."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
