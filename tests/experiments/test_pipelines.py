"""Each reproduction script, unchanged, on tiny data in the real formats: tuning, finals, report.
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


@pytest.mark.slow
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
    assert (out / "figure3.png").stat().st_size > 10_000 and (out / "figure3.svg").exists()
    assert "(c) one run: funnel/finals/seed=0 (Funnel (AdaGrad), seed 0)." in text
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


@pytest.mark.slow
def test_table1_cpu_analogue(fake_data, tmp_path):
    """Table 1's CPU analogue under the protocol, its study in two lanes: the paper's protocol beside the fair one,
    each row paired against the scheduled baseline with the paper's gap from its source table, the untuned
    paper-protocol momentum at the baseline's tuned lr, Figure 4 with its description, and the report regenerated
    identically (the committed README and search record are kept)."""
    out = tmp_path / "results" / "table1_cpu_fashion"
    out.mkdir(parents=True)
    (out / "README.md").write_text("kept")
    (out / "stale.png").write_text("from an older protocol")
    reproduce("table1_cpu", tmp_path, f"dataset.root={fake_data} {TINY['table1_cpu']}", BUDGET="2")
    rows = table(out / "table.csv")
    assert [r["method"] for r in rows] == [
        "Momentum (with lr schedule)", "Momentum (without lr schedule), paper protocol",
        "Momentum (without lr schedule), tuned", "Funneled Momentum (without lr schedule), tuned",
        "AdaGrad-EMA (without lr schedule), tuned", "Schedule-Free AdamW, tuned"]
    assert all(r["finals"] == "2/2" for r in rows)
    assert rows[0]["top-1 − baseline"] == "(baseline)"
    assert [r["paper's gap to baseline"] for r in rows] == [
        "–", "-5.37 (Table 1)", "–", "+0.10 (Table 1, paper protocol)", "-5.87 (Table 2)", "–"]
    assert "paper top-1" not in rows[0] and "top-1 − paper" not in rows[0]  # another task: only the gaps compare
    assert rows[2]["top-1 − baseline"].endswith(("higher", "lower", "no detectable difference"))
    root = tmp_path / "runs" / "table1_cpu"
    record = json.loads((root / "protocol.json").read_text())
    schedule, paper = record["methods"]["momentum_schedule"], record["methods"]["momentum_paper"]
    assert paper["trials"] == [] and paper["pick"] == {"optimizer.lr": schedule["pick"]["optimizer.lr"]}
    assert all(len(record["methods"][m]["trials"]) >= 2 for m in ("momentum", "funnel", "adagrad_ema", "sf_adamw"))
    config = json.loads((root / paper["finals"][1] / "summary.json").read_text())["config"]
    assert config["optimizer"]["lr"] == schedule["pick"]["optimizer.lr"] and config["seed"] == 1
    assert config["schedule"]["_target_"].endswith("Constant") and config["model"]["batch_norm"] is True
    assert config["optimizer"]["weight_decay"] == 5e-3 and config["dataset"]["augment"] is True
    text = (out / "table.md").read_text()
    assert "**2 Halton trials**" in text and "## Tuning" in text and "0 (fixed)" in text
    assert "## Figure 4: scales and gains" in text and "- All scales decay: " in text
    assert (out / "figure4.png").stat().st_size > 10_000 and (out / "figure4.pdf").exists()
    assert (out / "figure4.svg").exists() and "Drawn from funnel/finals/{seed=0, seed=1} (" in text
    assert (out / "README.md").read_text() == "kept" and not (out / "stale.png").exists()
    subprocess.run([sys.executable, "-m", "experiments.claims", "--results", str(tmp_path / "results"), "--out",
                    str(tmp_path / "claims.md")], cwd=ROOT, check=True, capture_output=True)
    ledger = (tmp_path / "claims.md").read_text()  # claims 4 and 5 read this table's numbers
    assert "- CPU analogue (" in ledger and "- CPU analogue: All scales decay: " in ledger
    before = text
    subprocess.run([sys.executable, "-m", "experiments.table1_cpu", str(root), "--out", str(out)], cwd=ROOT,
                   check=True, capture_output=True)
    assert (out / "table.md").read_text() == before


@pytest.mark.slow
def test_mobilenet_cifar10_table1_and_figure4(fake_data, tmp_path):
    reproduce("mobilenet_cifar10", tmp_path, f"dataset.root={fake_data} {TINY['mobilenet_cifar10']}", BUDGET="1",
              SEEDS="0")
    out = tmp_path / "results" / "mobilenet_cifar10"
    rows = {r["method"]: r for r in table(out / "table.csv")}
    assert [rows[m]["paper top-1"] for m in ("Momentum (with lr schedule)",
                                              "Momentum (without lr schedule), paper protocol",
                                              "Funneled Momentum (without lr schedule), paper protocol")] == [
        "89.51 ± 0.18", "84.14 ± 0.49", "89.61 ± 0.28"]
    assert len(rows) == 5 and all(r["finals"] == "1/1" for r in rows.values())
    assert rows["Momentum (with lr schedule)"]["top-1 − paper"].startswith(("+", "-"))
    assert (out / "figure4.png").stat().st_size > 10_000


@pytest.mark.slow
def test_resnet50_imagenet_table2(fake_data, tmp_path):
    reproduce("resnet50_imagenet", tmp_path, TINY["resnet50_imagenet"], str(fake_data / "imagenet"),
              VAL_SIZE="3", SEEDS="0")
    rows = table(tmp_path / "results" / "resnet50_imagenet" / "table.csv")
    assert [r["method"] for r in rows][2] == "AdaGrad-EMA (without lr schedule)" and len(rows) == 4
    record = json.loads((tmp_path / "runs" / "resnet50_imagenet" / "protocol.json").read_text())
    assert [len(e["trials"]) for e in record["methods"].values()] == [0, 0, 0, 9]  # the baselines are not tuned
    root = tmp_path / "runs" / "resnet50_imagenet"
    tuned = json.loads((root / record["methods"]["funnel_paper"]["trials"][0]["run"] / "summary.json").read_text())
    final = json.loads((root / record["methods"]["funnel_paper"]["finals"][0] / "summary.json").read_text())
    assert tuned["config"]["dataset"]["val_size"] == 3 and final["config"]["dataset"]["val_size"] == 0


@pytest.mark.parametrize("module", ["table1_mobilenet", "table2_resnet50"])
def test_not_run_notes(module, tmp_path):
    subprocess.run([sys.executable, "-m", f"experiments.{module}", "--not-run", "--out", str(tmp_path)], cwd=ROOT,
                   check=True)
    text = (tmp_path / "README.md").read_text()
    assert "not run here" in text and "bash scripts/reproduce_" in text and "Compute:" in text


@pytest.mark.slow
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
