"""The tuning protocol on objectives known by hand: Halton draws, equal budgets, edges extended until interior or a
limit, diverged trials counted; and the paired statistics against values computed by hand."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import yaml

from experiments import compare, protocol, stats
from experiments.protocol import Knob, Space, Study
from tests.helpers import tiny


def test_halton_points_by_hand():
    assert [protocol.radical_inverse(i, 2) for i in (1, 2, 3, 4)] == [0.5, 0.25, 0.75, 0.125]
    assert [protocol.radical_inverse(i, 3) for i in (1, 2, 3)] == pytest.approx([1 / 3, 2 / 3, 1 / 9])
    assert protocol.halton(2, 2)[0] == pytest.approx([0.5, 1 / 3])
    assert protocol.halton(2, 2)[1] == pytest.approx([0.25, 2 / 3])
    assert protocol.halton(1, 2, start=3)[0] == pytest.approx([0.75, 1 / 9])


def test_draws_map_to_ranges_points_and_grids():
    space = Space("s", (Knob("lr", 1e-3, 1.0), Knob("rule", points=(True, False))))
    assert protocol.draw(space, 2) == [{"lr": 0.03162, "rule": True}, {"lr": 0.005623, "rule": False}]
    grid = Space("g", (Knob("a", points=(1, 2)), Knob("b", points=("x", "y", "z"))), grid=True)
    assert len(protocol.draw(grid, 99)) == 6
    with pytest.raises(ValueError, match="log range needs min and hard_min > 0"):
        Knob("lr", 0.0, 1.0)
    with pytest.raises(ValueError, match="log range needs min and hard_min > 0"):
        Knob("weight_decay", 1e-5, 1e-3, hard_min=0.0)  # its log would be -inf when an edge reaches it
    with pytest.raises(ValueError, match="needs min < max"):
        Knob("lr", 1.0, 0.1)


def test_edges_and_extension_by_hand():
    knob = Knob("lr", 1e-3, 1.0, hard_max=10.0)
    space = Space("s", (knob,))
    explored = {"lr": (-3.0, 0.0)}
    trials = [{"lr": v} for v in (0.03, 0.9, 0.002, 0.1)]
    assert protocol.edges(space, explored, trials, {"lr": 0.03}) == []
    (edge,) = protocol.edges(space, explored, trials, {"lr": 0.9})  # no trial above it
    assert (edge.side, edge.limit) == ("high", None)
    # half the explored width (1.5 decades) beyond the end, clipped at the hard max
    (extended,) = protocol.extension(space, explored, [edge]).knobs
    assert (extended.low, extended.high) == pytest.approx((1.0, 10.0))
    (edge,) = protocol.edges(space, {"lr": (-3.0, 1.0)}, trials + [{"lr": 9.0}], {"lr": 9.0})
    assert edge.limit == "hard max 10"
    (edge,) = protocol.edges(space, explored, trials, {"lr": 0.002})
    assert (edge.side, edge.limit) == ("low", None)
    points = Space("p", (Knob("rule", points=(True, False)),))
    assert protocol.edges(points, {}, [{"rule": True}], {"rule": True}) == []  # feasible points have no edges


class Objective:
    """Stands in for training: writes a run directory whose validation score peaks at lr = `best` (a parabola in
    log10 lr) and which diverges above `diverge_above`. Counts the runs it was asked for."""

    def __init__(self, best: float, diverge_above: float = math.inf):
        self.best, self.diverge_above, self.calls = best, diverge_above, []

    def config(self, overrides: list[str], run_dir: Path) -> dict:
        """The config a run of `overrides` holds in its summary (the protocol checks it before reusing a run)."""
        values = dict(o.split("=", 1) for o in overrides)
        return {"seed": int(values["seed"]), "optimizer": {"lr": float(values["optimizer.lr"])},
                "label": values.get("label")}

    def __call__(self, overrides: list[str], run_dir: Path) -> None:
        config = self.config(overrides, run_dir)
        lr, seed = config["optimizer"]["lr"], config["seed"]
        self.calls.append((lr, seed))
        run_dir.mkdir(parents=True, exist_ok=True)
        diverged = lr > self.diverge_above
        score = 90 - 10 * (math.log10(lr) - math.log10(self.best)) ** 2
        (run_dir / "metrics.jsonl").write_text(json.dumps({"step": 1, "val/top1": score, "test/top1": score}) + "\n")
        (run_dir / "summary.json").write_text(json.dumps({
            "status": "diverged" if diverged else "finished", "final": {"val/top1": score, "test/top1": score},
            "phases": [{"name": "train", "start_step": 0}], "total_steps": 1, "config": config}))


def study_for(tmp_path, budget=8, **space):
    (tmp_path / "search").mkdir(exist_ok=True)
    knob = {"min": 1e-3, "max": 1.0, "scaling": "log", **space}
    (tmp_path / "search" / "m.yaml").write_text(yaml.safe_dump({"knobs": {"optimizer.lr": knob}}))
    return Study(experiment="x", metric="val/top1", reduce="final", budget=budget, seeds=[0, 1],
                 methods={"a": {"label": "A", "space": "m"}, "b": {"label": "B", "space": "m"}},
                 search_dir=str(tmp_path / "search"))


def test_every_method_gets_the_same_budget_and_paired_finals(tmp_path):
    objective = Objective(best=0.03)
    record = protocol.run_study(study_for(tmp_path), tmp_path / "runs", objective)
    for entry in record["methods"].values():
        assert len(entry["trials"]) == 8 and entry["edges"] == [] and len(entry["rounds"]) == 1
        assert all(t["values"]["optimizer.lr"] for t in entry["trials"])
    tuning = [s for _, s in objective.calls[:8]]
    assert set(tuning) == {100}  # the selection seed, kept apart from the finals
    assert sorted(s for _, s in objective.calls if s != 100) == [0, 0, 1, 1]
    assert record["methods"]["a"]["pick"] == record["methods"]["b"]["pick"]
    # a restarted study trains nothing again
    calls = len(objective.calls)
    protocol.run_study(study_for(tmp_path), tmp_path / "runs", objective)
    assert len(objective.calls) == calls


def test_an_edge_pick_extends_the_range_until_interior(tmp_path):
    record = protocol.run_study(study_for(tmp_path), tmp_path / "runs", Objective(best=3.0))
    entry = record["methods"]["a"]
    assert [r["trials"] for r in entry["rounds"]] == [8, 4]  # budget, then budget // 2 beyond the edge
    assert entry["rounds"][1]["ranges"]["optimizer.lr"] == pytest.approx([1.0, 10**1.5])
    assert entry["edges"] == [] and 1.0 < entry["pick"]["optimizer.lr"] < 10**1.5
    assert entry["explored"]["optimizer.lr"] == pytest.approx([1e-3, 10**1.5])


def test_divergence_beyond_an_edge_ends_the_extension_with_the_failures_counted(tmp_path):
    record = protocol.run_study(study_for(tmp_path), tmp_path / "runs", Objective(best=3.0, diverge_above=1.0))
    entry = record["methods"]["a"]
    assert len(entry["rounds"]) == 2 and entry["edges"] == []  # the old edge is now inside the explored range
    assert entry["diverged_trials"] == 4 and entry["pick"]["optimizer.lr"] <= 1.0
    assert sum(t["status"] == "diverged" and t["score"] == -math.inf for t in entry["trials"]) == 4


def test_limits_are_recorded(tmp_path):
    record = protocol.run_study(study_for(tmp_path, hard_max=1.0), tmp_path / "runs", Objective(best=3.0))
    assert record["methods"]["a"]["edges"] == [{"key": "optimizer.lr", "side": "high", "limit": "hard max 1"}]
    assert len(record["methods"]["a"]["rounds"]) == 1
    far = tmp_path / "far"
    far.mkdir()
    record = protocol.run_study(study_for(far), far / "runs", Objective(best=1e9))
    entry = record["methods"]["a"]
    assert len(entry["rounds"]) == 4 and entry["edges"][0]["limit"] == "3 extensions"


def test_a_fixed_space_spends_no_trial_and_runs_the_tied_values(tmp_path):
    """The paper's protocol for 'momentum without the schedule': the scheduled baseline's tuned lr, untuned."""
    study = study_for(tmp_path)
    (tmp_path / "search" / "fixed.yaml").write_text(yaml.safe_dump({"note": "not tuned", "knobs": {}}))
    study.methods["c"] = {"label": "C", "space": "fixed", "tie": {"optimizer.lr": ["a", "optimizer.lr"]}}
    objective = Objective(best=0.03)
    record = protocol.run_study(study, tmp_path / "runs", objective)
    fixed, a = record["methods"]["c"], record["methods"]["a"]
    assert fixed["trials"] == [] and fixed["rounds"] == [] and fixed["pick_score"] is None
    assert fixed["pick"] == a["pick"] and len(objective.calls) == 2 * (8 + 2) + 2
    assert objective.calls[-2:] == [(a["pick"]["optimizer.lr"], 0), (a["pick"]["optimizer.lr"], 1)]
    row = next(r for r in compare.tuning_rows(record) if r["method"] == "C")
    assert (row["trials"], row["pick at an edge?"], row["selection score"]) == ("0 (fixed)", "not tuned", "–")


def test_paired_interval_by_hand():
    # differences 1, 2, 3: mean 2, sd 1, half-width t(0.975, 2) / sqrt(3) = 4.303 / 1.7321 = 2.4843
    diff = stats.paired({0: 11, 1: 12, 2: 13}, {0: 10, 1: 10, 2: 10})
    assert (diff.mean, diff.wins, diff.n) == (2.0, 3, 3)
    assert (diff.low, diff.high) == pytest.approx((2 - 2.48434, 2 + 2.48434), abs=1e-4)
    assert not diff.excludes_zero() and stats.verdict(diff, "higher", "lower") == "no detectable difference"
    diff = stats.paired({0: 11, 1: 11.5, 2: 12, 3: 11.2}, {0: 10, 1: 10, 2: 10, 3: 10})
    assert diff.excludes_zero() and stats.verdict(diff, "higher", "lower") == "higher"
    assert stats.paired({0: 1.0, 1: None}, {0: 2.0, 1: 3.0}).n == 1  # a missing value pairs with nothing
    assert stats.t_975(4) == 2.776 and stats.t_975(60) == pytest.approx(2.000, abs=1e-3)


def test_time_verdicts_count_a_miss_as_the_whole_budget():
    inf = math.inf
    diff, word = stats.time_verdict({0: 5, 1: 6, 2: 5, 3: 6}, {0: 9, 1: 10, 2: 9, 3: 10}, budget=100)
    assert (diff.mean, word) == (-4.0, "faster")
    # the baseline misses 3 of 4 seeds: differences -4, -94, -95, -94 (by hand), mean -71.75, sd 45.169, half-width
    # 3.182 * 45.169 / 2 = 71.864: the interval just includes 0, so no verdict (the censoring is conservative)
    diff, word = stats.time_verdict({0: 5, 1: 6, 2: 5, 3: 6}, {0: 9, 1: inf, 2: None, 3: inf}, budget=100)
    assert diff.n == 4 and diff.mean == pytest.approx(-71.75) and diff.high == pytest.approx(0.114, abs=1e-3)
    assert word == "no detectable difference"
    _, word = stats.time_verdict({0: 5, 1: 6, 2: 5, 3: 6}, {0: inf, 1: inf, 2: inf, 3: inf}, budget=100)
    assert word == "faster"
    _, word = stats.time_verdict({0: inf, 1: inf}, {0: inf, 1: inf}, budget=100)
    assert word == "no detectable difference"  # both at the budget: a difference of 0
    _, word = stats.time_verdict({0: 50, 1: inf, 2: 70}, {0: 10, 1: 12, 2: 11}, budget=100)
    assert word == "slower"


def test_launched_runs_each_train_in_their_own_processes_under_the_launcher(fake_data, tmp_path):
    """--launch: each run is `<launcher> run.py ...` in its own process; here torchrun's module with two CPU
    processes (gloo), as a multi-GPU study would start them."""
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump({
        "experiment": "quick", "metric": "val/current/top1", "reduce": "final", "budget": 1, "seeds": [0],
        "methods": {"adagrad": {"label": "AdaGrad", "base": ["arm=quick_adagrad"], "space": "fixed"}}}))
    root = tmp_path / "runs"
    launch = f"{sys.executable} -m torch.distributed.run --standalone --nproc_per_node=2"
    extra = [*tiny("quick", fake_data), "trainer.max_steps=2"]
    protocol.main([str(study), "--root", str(root), "--launch", launch, "--extra", *extra])
    record = json.loads((root / "protocol.json").read_text())
    summary = json.loads((root / record["methods"]["adagrad"]["finals"][0] / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["world_size"] == 2 and summary["config"]["seed"] == 0
    broken = protocol.LaunchedRunner([sys.executable], ["trainer.batch_size=-1"])
    with pytest.raises(RuntimeError, match="run failed before it wrote a summary"):
        broken(["experiment=quick", *extra], tmp_path / "broken")
