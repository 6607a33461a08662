"""scripts/check_gpu.sh: its CPU dry run exercises every section the GPU run has, so that the one GPU run a
session gets cannot fail on a typo; without a GPU and without --cpu it says what to do."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from tests.helpers import ROOT


def test_the_cpu_dry_run_runs_every_check(tmp_path):
    out = tmp_path / "gpu.md"
    done = subprocess.run(["bash", "scripts/check_gpu.sh", "--cpu", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, env={**os.environ, "PYTHON": sys.executable}, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    text = out.read_text()
    for heading in ("## 1. Paths against the float64 reference", "## 2. bf16 parameters keep fp32 state",
                    "## 3. Optimizer step cost", "## 4. Runner throughput", "## 5. Two-rank DDP over nccl"):
        assert heading in text
    report = json.loads(out.with_suffix(".json").read_text())
    rows = report["agreement"]
    assert {(r["optimizer"], r["path"]) for r in rows} == {
        (o, p) for o in ("Funnel(momentum)", "Funnel(adam), unnormalized, Nesterov", "SGDN-HD", "Adam-HD")
        for p in ("per-tensor", "foreach", "fused")}
    assert all(r["ok"] and r["max_abs_diff"] < 1e-9 for r in rows)
    assert all(v["ok"] and v["state_dtypes"] == ["torch.float32"] for v in report["bf16"].values())
    assert [(r["batch"], r["compile"]) for r in report["throughput"]] == [(50, False), (128, False)]
    assert all(r["step_s"] > 0 for r in report["throughput"])
    assert "| mobilenet_v1 on cpu | funnel_momentum |" in report["bench"]
    assert "skipped: this machine has 0 CUDA device(s)" in text
    assert "GPU-hours" in text and "runs (configs/tuning/table1_mobilenet.yaml" in text


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_without_a_gpu_it_says_how_to_run_it(capsys):
    from scripts import check_gpu
    assert check_gpu.main([]) == 2
    assert "pass --cpu for the dry run" in capsys.readouterr().out


def test_the_table1_projection_counts_the_study():
    """5 methods x 5 seeds of finals, budget 8 for the three tuned methods, the paper's 18-point grid, nothing for
    the tied paper-protocol momentum; 167 epochs of 900 steps."""
    from scripts import check_gpu
    assert check_gpu.table1_runs() == (3 * 8 + 18 + 5 * 5, 167 * 900)
