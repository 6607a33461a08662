"""The W&B run a training run writes (real wandb, offline), read back from its transaction log (run-<id>.wandb) and
its chart tables: metric axes and summaries, the end-of-run charts, the run's identity, its summary, its id across
resumes and re-created folders; and the tuning protocol and the reproductions writing W&B runs when asked."""
from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from omegaconf import open_dict
from wandb.proto import wandb_internal_pb2 as pb

from experiments import protocol
from funnel.train.loop import train
from funnel.train.wandb_sink import identity
from tests.helpers import QUIET, ROOT, Crash, compose_config, crash_after

BLOCK = 32 * 1024  # the transaction log's block size (a LevelDB-style log of protobuf records)


@pytest.fixture(autouse=True)
def _quiet_wandb(monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_MODE", raising=False)


def log_records(path: Path) -> list:
    """Every record of a .wandb file: a 7-byte file header, then in 32 KiB blocks chunks with a 7-byte header
    (crc32, length, type: 1 full, 2 first, 3 middle, 4 last) that together hold one serialized pb.Record."""
    data = path.read_bytes()
    assert data[:4] in (b":W&B", b":W&B"[:len(data)]), f"{path} is not a W&B transaction log"
    records, pos, chunks = [], 7, b""
    while pos + 7 <= len(data):
        if BLOCK - pos % BLOCK < 7:  # a block's tail too short for a header is padding
            pos += BLOCK - pos % BLOCK
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0:  # zero padding to the end of the block
            pos += BLOCK - pos % BLOCK
            continue
        if pos + 7 + length > len(data):  # still being written
            break
        chunks += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(chunks)
            records.append(record)
            chunks = b""
    return records


class WandbRun:
    """What one offline run directory (<run dir>/wandb/offline-run-*) recorded."""

    def __init__(self, offline_dir: Path):
        self.dir = offline_dir
        (log,) = offline_dir.glob("run-*.wandb")
        deadline = time.monotonic() + 30
        # wandb-core writes the file in the background: run.finish() can return before its last write (the exit)
        while (records := log_records(log))[-1:] == [] or records[-1].WhichOneof("record_type") != "exit":
            assert time.monotonic() < deadline, f"{log} has no exit record 30 s after the run finished"
            time.sleep(0.2)
        kinds = lambda kind: [getattr(r, kind) for r in records if r.WhichOneof("record_type") == kind]
        self.run = kinds("run")[0]
        self.metrics = {m.glob_name or m.name: m for m in kinds("metric")}
        self.history = [{item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in h.item}
                        for h in kinds("history")]
        self.summary = {}
        for s in kinds("summary"):
            self.summary.update({u.key or "/".join(u.nested_key): json.loads(u.value_json) for u in s.update})

    def table(self, name: str) -> dict[str, list[tuple]]:
        """A line_series chart's table as {line: [(x, y), ...]}."""
        (path,) = self.dir.glob(f"files/media/table/{name}_table_*.table.json")
        lines: dict[str, list[tuple]] = {}
        for x, key, y in json.loads(path.read_text())["data"]:
            lines.setdefault(key, []).append((x, y))
        return lines


def wandb_runs(run_dir: Path) -> list[WandbRun]:
    return [WandbRun(d) for d in sorted((run_dir / "wandb").glob("offline-run-*"))]


def quick(fake_data, *overrides):
    return compose_config(["experiment=quick", "logger=wandb", f"dataset.mnist_5k_path={fake_data}/mnist_5k.csv.gz",
                           *QUIET, *overrides])


@pytest.fixture(scope="module")
def funnel_run(fake_data, tmp_path_factory):
    """Funnel(AdaGrad) through all three phases of rotated MNIST, 2 steps each, logged every step."""
    run_dir = tmp_path_factory.mktemp("funnel") / "run"
    train(quick(fake_data, "arm=quick_funnel", "trainer.epochs=1", "trainer.log_every=1", "trainer.eval_every=2",
                "trainer.checkpoint_every=0"), run_dir)
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    summary = json.loads((run_dir / "summary.json").read_text())
    (wandb_run,) = wandb_runs(run_dir)
    return wandb_run, metrics, summary


def test_every_key_is_plotted_against_the_trainer_step(funnel_run):
    run, metrics, _ = funnel_run
    for pattern in ("train/*", "val/*", "test/*", "lr/*", "scale/*", "gain/*"):
        assert run.metrics[pattern].step_metric == "trainer/step", pattern
    assert run.metrics["val/current/top1"].summary.max and run.metrics["test/angle0/top1"].summary.max
    assert run.metrics["train/loss"].summary.min and run.metrics["val/current/loss"].summary.min
    logged = {k for record in metrics for k in record}
    per_layer_gains = {k for k in logged if k.startswith("gain/")}
    assert len(per_layer_gains) == 12  # 6 statistics of the weight and of the bias
    assert all(run.metrics[k].options.hidden for k in per_layer_gains)  # out of the automatic panels
    assert not any(m.options.hidden for k, m in run.metrics.items() if k.startswith("scale/"))
    # every record of metrics.jsonl is a W&B history row at its own step
    steps = sorted({r["step"] for r in metrics})
    assert sorted({row["trainer/step"] for row in run.history if "trainer/step" in row}) == steps
    final = next(row for row in run.history if row.get("trainer/step") == steps[-1] and "train/loss" in row)
    assert final["train/loss"] == pytest.approx(metrics[-1]["train/loss"])


def test_charts_overlay_the_layers_the_gain_quantiles_and_the_phases(funnel_run):
    run, metrics, summary = funnel_run
    scales = run.table("charts/scale_per_layer")
    assert set(scales) == {"linear.weight", "linear.bias"}
    assert scales["linear.weight"] == [(r["step"], pytest.approx(r["scale/linear.weight"])) for r in metrics
                                       if "scale/linear.weight" in r]
    gains = run.table("charts/gain_quantiles")
    assert set(gains) == {"p10", "p50", "p90"}
    by_hand = [(r["step"], pytest.approx((r["gain/linear.weight/p50"] + r["gain/linear.bias/p50"]) / 2))
               for r in metrics if "gain/linear.weight/p50" in r]
    assert gains["p50"] == by_hand
    accuracy = run.table("charts/accuracy")
    assert {"test/angle0/top1", "test/angle45/top1", "test/angle90/top1"} <= set(accuracy)
    starts = {p["name"]: p["start_step"] for p in summary["phases"]}
    assert starts == {"angle90": 0, "angle0": 2, "angle45": 4}
    assert {x for x, _ in accuracy["angle0 starts"]} == {2} and {x for x, _ in accuracy["angle45 starts"]} == {4}
    assert accuracy["test/angle0/top1"][-1] == (6, summary["final"]["test/angle0/top1"])


def test_the_run_is_named_grouped_and_tagged_and_its_summary_holds_the_outcome(funnel_run):
    run, _, summary = funnel_run
    assert run.run.display_name == "Funnel (AdaGrad) seed=0"  # the arm's label and the seed
    assert run.run.run_group == "quick"  # no sweep: the experiment
    assert run.run.job_type == "Funnel(adagrad)"  # no arm from the runner: the optimizer
    assert list(run.run.tags) == ["quick", "rotated_mnist", "mnist_5k", "LogisticRegression", "Funnel(adagrad)"]
    assert {k[len("best/"):]: v for k, v in run.summary.items() if k.startswith("best/")} == summary["best"]
    assert {k[len("final/"):]: v for k, v in run.summary.items() if k.startswith("final/")} == summary["final"]
    assert run.summary["git/commit"] == summary["git"]["commit"] and len(summary["git"]["commit"]) == 40
    assert run.summary["git/dirty"] == summary["git"]["dirty"]
    assert (run.summary["status"], run.summary["diverged_step"]) == ("finished", None)


def test_sweep_arm_and_user_settings_decide_the_identity():
    with_launch = ["experiment=quick", "arm=quick_funnel", "++launch.arm=quick_funnel", "++launch.sweep=quick-0a1b2c3d"]
    assert identity(compose_config(with_launch)) == {
        "name": "Funnel (AdaGrad) seed=0", "group": "quick-0a1b2c3d", "job_type": "quick_funnel",
        "tags": ["quick", "rotated_mnist", "mnist_5k", "LogisticRegression", "Funnel(adagrad)"]}
    assert identity(compose_config([*with_launch, "label=null", "seed=3"]))["name"] == "quick_funnel seed=3"
    assert identity(compose_config(["experiment=quick", "optimizer=sgd", "label=null"]))["name"] == "quick seed=0"
    mine = identity(compose_config([*with_launch, "logger.name=mine", "logger.group=g", "logger.job_type=j",
                                    "logger.tags=[a,quick]"]))
    assert mine == {"name": "mine", "group": "g", "job_type": "j",
                    "tags": ["a", "quick", "rotated_mnist", "mnist_5k", "LogisticRegression", "Funnel(adagrad)"]}
    bare = compose_config(["experiment=rotated_mnist", "arm=rotated_adagrad", "dataset.base=fashion_mnist"])
    with open_dict(bare):
        bare.pop("launch", None)  # train() called directly with a config composed without the runner
    assert identity(bare) == {"name": "AdaGrad seed=0", "group": "rotated_mnist", "job_type": "Adagrad",
                              "tags": ["rotated_mnist", "fashion_mnist", "LogisticRegression", "Adagrad"]}


def test_a_diverged_run_says_so_and_where_in_its_summary(fake_data, tmp_path):
    train(quick(fake_data, "optimizer=sgd", "optimizer.lr=inf", "trainer.epochs=2", "trainer.log_every=4"), tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["diverged_step"] >= 1
    (run,) = wandb_runs(tmp_path)
    assert (run.summary["status"], run.summary["diverged_step"]) == ("diverged", summary["diverged_step"])
    assert not any(k.startswith("final/") for k in run.summary)  # nothing diverged is reported as final
    assert {k[len("best/"):]: v for k, v in run.summary.items() if k.startswith("best/")} == summary["best"]


def test_a_resume_continues_the_w_and_b_run_and_a_recreated_folder_starts_a_new_one(fake_data, tmp_path):
    run_dir = tmp_path / "run"
    settings = ("trainer.max_steps=6", "trainer.checkpoint_every=2", "trainer.log_every=1", "trainer.eval_every=3")
    with pytest.raises(Crash):
        train(quick(fake_data, *settings), run_dir, after_step=crash_after(4))
    time.sleep(1)  # an offline run's folder is named by the second it starts, and its id
    train(quick(fake_data, *settings), run_dir)  # resumes from the checkpoint of step 4
    crashed, resumed = wandb_runs(run_dir)
    assert crashed.run.run_id == resumed.run.run_id == (run_dir / "wandb_id").read_text().strip()
    assert max(row["trainer/step"] for row in crashed.history) == 4
    assert min(row["trainer/step"] for row in resumed.history) == 5 and resumed.summary["status"] == "finished"
    shutil.rmtree(run_dir)
    train(quick(fake_data, *settings), run_dir)  # the same command, a new run: a new W&B run
    (again,) = wandb_runs(run_dir)
    assert again.run.run_id != crashed.run.run_id


def tiny_study(tmp_path: Path, space: str) -> Path:
    study = tmp_path / "tiny_study.yaml"
    study.write_text(yaml.safe_dump({
        "experiment": "quick", "metric": "val/current/top1", "reduce": "final", "budget": 1, "seeds": [0],
        "max_extensions": 0, "methods": {"adagrad": {"label": "AdaGrad", "base": ["arm=quick_adagrad"],
                                                     "space": space}}}))
    return study


def test_the_protocol_writes_w_and_b_runs_only_when_asked(fake_data, tmp_path):
    tiny = [f"dataset.mnist_5k_path={fake_data}/mnist_5k.csv.gz", "trainer.max_steps=2", "trainer.eval_every=2",
            "trainer.checkpoint_every=0", "trainer.num_workers=0"]
    root = tmp_path / "runs"
    protocol.main([str(tiny_study(tmp_path, "adagrad")), "--root", str(root), "--logger", "wandb", "--extra", *tiny])
    record = json.loads((root / "protocol.json").read_text())
    (trial,) = record["methods"]["adagrad"]["trials"]
    (tuned,) = wandb_runs(root / trial["run"])
    assert (tuned.run.run_group, tuned.run.job_type) == ("tiny_study/adagrad/tune", "adagrad")
    assert tuned.run.display_name == f"adagrad {Path(trial['run']).name}"  # trials differ by their values
    (final,) = wandb_runs(root / record["methods"]["adagrad"]["finals"][0])
    assert (final.run.run_group, final.run.job_type) == ("tiny_study/adagrad/finals", "adagrad")
    assert final.run.display_name == "AdaGrad seed=0" and final.summary["status"] == "finished"
    plain = tmp_path / "plain"
    protocol.main([str(tiny_study(tmp_path, "fixed")), "--root", str(plain), "--extra", *tiny])
    assert (plain / "adagrad" / "finals" / "seed=0" / "summary.json").exists()
    assert not list(plain.rglob("wandb")), "a study wrote W&B runs without --logger wandb"


@pytest.mark.parametrize("logger", [None, "wandb"])
def test_the_reproductions_pass_the_logger_to_the_protocol(logger, tmp_path):
    """PY=echo prints the protocol commands the scripts would run."""
    env = {k: v for k, v in os.environ.items() if k != "LOGGER"} | {"PY": "echo", "RUNS": str(tmp_path)}
    env |= {"LOGGER": logger} if logger else {}
    shell = subprocess.run(["bash", "-c", "source scripts/reproduce_common.sh && study configs/tuning/x.yaml r"],
                           cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout
    peers = subprocess.run([sys.executable, "scripts/reproduce_peers.py", "--workloads", "cnn_fashion"], cwd=ROOT,
                           env=env, capture_output=True, text=True, check=True).stdout
    for out in (shell, peers.splitlines()[0]):
        assert f"--logger {logger or 'none'} " in out, out


def test_a_checkpoint_from_before_wandb_id_resumes_its_old_run(tmp_path):
    import hashlib

    from funnel.train.wandb_sink import run_id

    (tmp_path / "wandb").mkdir()  # an earlier version's W&B folder, and no wandb_id
    assert run_id(tmp_path, resumed=True) == hashlib.sha1(str(tmp_path.resolve()).encode()).hexdigest()[:16]
    assert run_id(tmp_path, resumed=False) != run_id(tmp_path, resumed=False)  # a new run: a new id each time
