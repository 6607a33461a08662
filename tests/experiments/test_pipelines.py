"""Each reproduction script, unchanged, on tiny data in the real formats: sweep, selection, finals, report.
The full-scale pipelines (Table 1 / Figure 4, Table 2) are exercised here because this machine cannot run them."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest

from tests.helpers import ROOT

TINY = {
    "rotated_mnist": "trainer.eval_batch_size=100 trainer.epochs=2",
    "table1_cpu": "dataset.val_size=60 trainer.batch_size=32 trainer.eval_batch_size=100 trainer.max_steps=6 "
                  "trainer.eval_every=2 trainer.log_every=2",
    "mobilenet_cifar10": "dataset.val_size=20 trainer.batch_size=8 trainer.epochs=1 trainer.max_steps=3 "
                         "trainer.eval_every=3 trainer.log_every=1 trainer.eval_batch_size=50",
    "resnet50_imagenet": "dataset.image_size=64 dataset.eval_resize=72 trainer.batch_size=6 trainer.max_steps=2 "
                         "trainer.eval_every=2 trainer.log_every=1 trainer.eval_batch_size=9 trainer.num_workers=0 "
                         "trainer.bf16=false",
}


def reproduce(script: str, tmp_path, extra: str, *args, **env) -> None:
    env = {**os.environ, "PY": sys.executable, "SEEDS": "0,1", "RUNS": str(tmp_path / "runs"),
           "RESULTS": str(tmp_path / "results"), "EXTRA": extra, "WANDB_SILENT": "true", "HF_HUB_OFFLINE": "1", **env}
    result = subprocess.run(["bash", f"scripts/reproduce_{script}.sh", *args], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]


def table(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_rotated_mnist(fake_data, tmp_path):
    """The Figure 3 pipeline under the tuning protocol, 2 trials per method, 2 final seeds: every method tuned with
    the same budget at the selection seed, the finals at the picks, the report and the claims ledger."""
    reproduce("rotated_mnist", tmp_path, f"dataset.mnist_5k_path={fake_data}/mnist_5k.csv.gz {TINY['rotated_mnist']}",
              "mnist5k_b100", BUDGET="2")
    out = tmp_path / "results" / "rotated_mnist" / "mnist5k_b100"
    rows = table(out / "table.csv")
    assert [r["method"] for r in rows] == [
        "AdaGrad", "Funnel (AdaGrad), paper protocol", "Funnel (AdaGrad)", "AdaGrad + momentum 0.9",
        "Funnel (AdaGrad, momentum 0.9)", "Funnel, gains only (gamma_s = 0) (ablation)",
        "Funnel, scale only (gamma_p = 0) (ablation)", "Funnel, log-space update (egu = log) (ablation)",
        "Funnel, the other gain rule (ablation)"]
    assert all(r["finals"] == "2/2" for r in rows)
    assert "end of angle45 (top-1 %)" in rows[0] and "recovery after shift 2 (median steps)" in rows[0]
    text = (out / "table.md").read_text()
    for section in ("## Tuning", "## Paired against AdaGrad", "## The mechanism", "## The scale around each shift",
                    "## Provenance", "**2 Halton trials**"):
        assert section in text, section
    assert (out / "figure3.png").stat().st_size > 10_000
    root = tmp_path / "runs" / "fig3" / "mnist5k_b100"
    record = json.loads((root / "protocol.json").read_text())
    adagrad, paper = record["methods"]["adagrad"], record["methods"]["funnel_paper"]
    assert len(paper["trials"]) == 18  # the paper's grid, whole
    assert all(len(e["rounds"][0]) and e["rounds"][0]["trials"] == 2 for n, e in record["methods"].items()
               if n != "funnel_paper")
    # the paper row uses AdaGrad's tuned lr; the finals ran the picks at the final seeds
    assert paper["pick"]["optimizer.lr"] == adagrad["pick"]["optimizer.lr"]
    funnel = record["methods"]["funnel"]
    for seed, path in zip((0, 1), funnel["finals"]):
        config = json.loads((root / path / "summary.json").read_text())["config"]
        assert config["seed"] == seed and config["optimizer"]["lr"] == funnel["pick"]["optimizer.lr"]
        assert config["optimizer"]["gamma_p"] == funnel["pick"]["optimizer.gamma_p"]
    tuned = json.loads((root / funnel["trials"][0]["run"] / "summary.json").read_text())["config"]
    assert tuned["seed"] == 100
    gains_only = json.loads((root / record["ablations"]["gains_only"]["finals"][0] / "summary.json").read_text())
    assert gains_only["config"]["optimizer"]["gamma_s"] == 0.0
    assert "## 8. holds" in (tmp_path / "results" / "claims.md").read_text()
    # the report regenerates the same table from the same run directories
    before = (out / "table.md").read_text()
    subprocess.run([sys.executable, "-m", "experiments.fig3_rotated_mnist", str(root), "--out", str(out),
                    "--title", "mnist5k_b100"], cwd=ROOT, check=True, capture_output=True)
    assert (out / "table.md").read_text() == before


def test_table1_cpu_analogue(fake_data, tmp_path):
    reproduce("table1_cpu", tmp_path, f"dataset.root={fake_data} {TINY['table1_cpu']}")
    out = tmp_path / "results" / "table1_cpu_fashion"
    rows = table(out / "table.csv")
    assert [r["method"] for r in rows] == ["Momentum (with lr schedule)", "Momentum (without lr schedule)",
                                           "Funneled Momentum (without lr schedule)", "Adam (without lr schedule)"]
    assert rows[0]["top-1 gap to “Momentum (with lr schedule)”"] == "+0.00" and rows[2]["paper's gap"] == "+0.10"
    assert rows[3]["paper top-1"] == "–" and all(r["n"] == "2" for r in rows)
    assert (out / "scales_gains.png").exists() and (out / "selection_adam.md").exists()


def test_mobilenet_cifar10_table1_and_figure4(fake_data, tmp_path):
    reproduce("mobilenet_cifar10", tmp_path, f"dataset.root={fake_data} {TINY['mobilenet_cifar10']}")
    out = tmp_path / "results" / "mobilenet_cifar10"
    rows = table(out / "table.csv")
    assert [r["paper top-1"] for r in rows] == ["89.51 ± 0.18", "84.14 ± 0.49", "89.61 ± 0.28"]
    assert all(r["n"] == "2" and r["top-1 − paper"].startswith(("+", "-")) for r in rows)
    assert (out / "figure4.png").stat().st_size > 10_000


def test_resnet50_imagenet_table2(fake_data, tmp_path):
    reproduce("resnet50_imagenet", tmp_path, TINY["resnet50_imagenet"], str(fake_data / "imagenet"),
              VAL_SIZE="3", SEEDS="0")
    rows = table(tmp_path / "results" / "resnet50_imagenet" / "table.csv")
    assert [r["method"] for r in rows][2] == "AdaGrad-EMA (without lr schedule)" and len(rows) == 4


@pytest.mark.parametrize("module", ["table1_mobilenet", "table2_resnet50"])
def test_not_run_notes(module, tmp_path):
    subprocess.run([sys.executable, "-m", f"experiments.{module}", "--not-run", "--out", str(tmp_path)], cwd=ROOT,
                   check=True)
    text = (tmp_path / "README.md").read_text()
    assert "not run here" in text and "bash scripts/reproduce_" in text and "Compute:" in text


def test_peer_comparison(fake_data, tmp_path):
    """The peers under the tuning protocol on tiny data: a method whose step needs the loss (MoMo), one that cannot
    resume (Mechanic), the one-shot column, the report and the ledger's reading of it."""
    env = {**os.environ, "PY": sys.executable, "RUNS": str(tmp_path / "runs"), "RESULTS": str(tmp_path / "results"),
           "SEEDS": "0,1", "WANDB_SILENT": "true",
           "EXTRA": f"dataset.mnist_5k_path={fake_data}/mnist_5k.csv.gz trainer.batch_size=100 trainer.epochs=3 "
                    "trainer.eval_batch_size=100"}
    methods = ["adagrad", "funnel", "mechanic_adagrad", "prodigy", "momo"]
    result = subprocess.run([sys.executable, "scripts/reproduce_peers.py", "--workloads", "rotated_mnist5k",
                             "--budget", "2", "--methods", *methods], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = tmp_path / "results" / "peers"
    rows = table(out / "table.csv")
    assert [r["method"] for r in rows] == ["AdaGrad", "Funnel (AdaGrad)", "Mechanic (AdaGrad)", "Prodigy", "MoMo"]
    assert all(r["trials"].startswith("2") for r in rows)
    record = json.loads((tmp_path / "runs" / "peers" / "rotated_mnist5k" / "protocol.json").read_text())
    for name in methods:
        entry = record["methods"][name]
        assert len(entry["finals"]) == len(entry["one_shot"]) == 2
        one_shot = json.loads((tmp_path / "runs" / "peers" / "rotated_mnist5k" / entry["one_shot"][0] /
                               "summary.json").read_text())
        assert one_shot["status"] == "finished" and one_shot["config"]["seed"] == 0
    text = (out / "table.md").read_text()
    assert "Where Funnel wins and where it loses" in text and "**2 Halton trials**" in text
    assert (out / "profiles.png").stat().st_size > 10_000
    ledger = (tmp_path / "results" / "claims.md").read_text()
    assert "peers rotated_mnist5k: Funnel (AdaGrad) − AdaGrad" in ledger
