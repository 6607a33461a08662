"""The optimizer benchmark steps every registered optimizer (a peer that needs a mode switch, as Schedule-Free
does, included), so a full benchmark run cannot fail after minutes of timing."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.helpers import ROOT


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_optim", ROOT / "scripts" / "bench_optim.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_candidate_steps_and_reports_its_state():
    bench = load_bench()
    make = {**bench.BASELINES, **{n: f for n, f in bench.candidates().items() if "(fused)" not in n}}
    model = torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.ReLU(), torch.nn.Linear(4, 3))
    before = [p.detach().clone() for p in model.parameters()]
    measured = bench.time_group(make, model, torch.device("cpu"), rounds=1)
    assert set(measured) == set(make)
    assert all(row["ms"] > 0 for row in measured.values())
    # state bytes per parameter, known by hand: none for plain SGD, one fp32 buffer for momentum, two for Adam
    # (plus its step counters), Funnel's velocity + gains + EMA at least
    assert measured["sgd (foreach)"]["bytes_per_param"] == 0
    assert measured["torch SGD momentum (foreach)"]["bytes_per_param"] == 4
    assert 8 < measured["torch Adam (foreach)"]["bytes_per_param"] < 9
    assert measured["funnel_momentum (foreach)"]["bytes_per_param"] >= 12
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # the model itself is untouched


@pytest.mark.slow
def test_the_quick_benchmarks_run_as_the_readme_gives_them():
    """`python -m scripts.bench_optim --quick && python -m scripts.bench_train --quick` (README, Performance): the
    second failed without Fashion-MNIST on disk (100 steps asked of a 72-step plan) until its epochs were raised."""
    result = subprocess.run("python -m scripts.bench_optim --quick && python -m scripts.bench_train --quick",
                            shell=True, cwd=ROOT, capture_output=True, text=True, timeout=900,
                            env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "small_cnn: bare" in result.stdout and "Funnel (default path)" in result.stdout
