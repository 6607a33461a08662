"""The numbers read off runs, against values computed by hand."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from experiments import analysis
from experiments.fig4_scales_gains import describe, figure, sentence
from experiments.runs import Run


def run_with(values: dict[int, float], phases=(("a", 0), ("b", 10)), total=20, status="finished", config=None):
    metrics = [{"step": s, "test/current/top1": v, "time/elapsed_s": 0.5 * s} for s, v in sorted(values.items())]
    summary = {"status": status, "total_steps": total, "final": {"test/current/top1": metrics[-1]["test/current/top1"]},
               "phases": [{"name": n, "start_step": s} for n, s in phases], "config": config or {}}
    return Run(Path("run"), "run", metrics, summary)


CURVE = {0: 10, 2: 40, 4: 60, 6: 70, 8: 78, 10: 80, 12: 20, 14: 50, 16: 75, 18: 85, 20: 88}


def test_phase_ends_and_recovery():
    run = run_with(CURVE)
    assert analysis.phase_bounds(run) == [("a", 0, 10), ("b", 10, 20)]
    assert analysis.phase_end_values(run) == [80, 88]
    # 90% of 80 = 72 is first reached at step 16, six steps after the shift at step 10, 3 s later
    assert analysis.recovery(run) == [(6, 3.0)]
    assert analysis.recovery(run, fraction=1.0) == [(8, 4.0)]
    assert analysis.recovery(run_with({**CURVE, 16: 70, 18: 71, 20: 71.9})) == [(None, None)]


def test_recovery_is_searched_within_its_phase():
    """Shift 1 (step 10) never gets back to 90% of 80 = 72 before the next shift at step 20; the 75 at step 24 is
    in the third phase and must not count as shift 1's recovery (it did, searched to the end of the run)."""
    curve = {0: 10, 5: 70, 10: 80, 15: 40, 20: 60, 24: 75, 30: 78}
    run = run_with(curve, phases=(("a", 0), ("b", 10), ("c", 20)), total=30)
    # shift 2: 90% of 60 = 54 is reached at step 24, four steps after the shift, 2 s later
    assert analysis.recovery(run) == [(None, None), (4, 2.0)]
    assert analysis.time_to_target(run, "test/current/top1", 72, start=10, end=20) == (None, None)
    assert analysis.time_to_target(run, "test/current/top1", 72, start=10) == (14, 7.0)


def test_time_to_target_and_mean():
    run = run_with(CURVE)
    assert analysis.time_to_target(run, "test/current/top1", 60) == (4, 2.0)
    assert analysis.time_to_target(run, "test/current/top1", 99) == (None, None)
    assert analysis.mean_over_evaluations(run, "test/current/top1") == pytest.approx(sum(CURVE.values()) / 11)


def test_mean_std():
    assert analysis.mean_std([1, 2, 3]) == (2.0, 1.0, 3)
    mean, std, n = analysis.mean_std([5, None, float("nan")])
    assert (mean, n) == (5.0, 1) and math.isnan(std)
    assert analysis.fmt(89.514, 0.176) == "89.51 ± 0.18" and analysis.fmt(float("nan"), 1) == "–"


def test_selection_scores():
    runs = [run_with(CURVE), run_with({0: 99.0, 2: 99.0}, status="diverged")]
    assert analysis.score(runs[1], "test/current/top1", "final") == -math.inf  # diverged never wins
    assert analysis.score(runs[0], "test/current/top1", "best") == 88
    with pytest.raises(ValueError, match="reduce must be one of"):
        analysis.score(runs[0], "test/current/top1", "median")


def test_performance_profile_puts_each_workloads_baseline_and_wrappers_on_one_line():
    """The baseline is AdaGrad on one workload and momentum on another, Mechanic wraps each one's base: the profile
    has one line for each, with a ratio per workload (median steps to target over the best method's, by hand)."""
    from experiments import peers

    def steps(values):
        return {"tuned": {"steps": dict(enumerate(values))}}

    summary = {"rotated": {"baseline": "adagrad", "methods": {
                   "funnel": steps([10, 20, 30]), "adagrad": steps([40, 40, 40]), "prodigy": steps([5, 5, math.inf]),
                   "mechanic_adagrad": steps([10, 10, 10])}},
               "cnn": {"baseline": "momentum", "methods": {
                   "funnel": steps([math.inf] * 3), "momentum": steps([30, 30, 30]), "prodigy": steps([60, 60, 60]),
                   "mechanic_sgd": steps([None, None, 30])}}}
    assert peers.profiles(summary, "tuned") == {"funnel": [4.0, math.inf], "baseline": [8.0, 1.0],
                                                "prodigy": [1.0, 2.0], "mechanic": [2.0, math.inf]}


def test_claim_verdicts_from_the_paired_words():
    from experiments.claims import HOLDS, NOT_HOLD, NOT_TESTED, PARTLY, verdict_from

    same = "no detectable difference"
    assert verdict_from(["higher", "higher"], "higher", "lower") == HOLDS
    assert verdict_from(["higher", same], "higher", "lower") == PARTLY
    assert verdict_from([same, same], "higher", "lower") == NOT_HOLD
    assert verdict_from(["higher", "lower"], "higher", "lower") == PARTLY  # the evidence lines show the reversal
    assert verdict_from(["lower", same], "higher", "lower") == NOT_HOLD
    assert verdict_from([], "higher", "lower") == NOT_TESTED


def test_table1_claim_needs_the_gap_and_a_funnel_interval_above_minus_one_point():
    from experiments.claims import HOLDS, NOT_HOLD, NOT_TESTED, PARTLY, claim_figure4, claim_no_schedule

    def diff(mean, low, high, verdict):
        return {"mean": mean, "low": low, "high": high, "wins": 0, "n": 5, "verdict": verdict}

    def summary(gap, funnel):
        rows = {n: {"method": n} for n in ("momentum_schedule", "momentum_paper", "funnel")}
        return {"title": "t", "baseline": "momentum_schedule", "rows": rows,
                "top1_vs_baseline": {"momentum_paper": gap, "funnel": funnel}}

    gap, no_gap = diff(-4.8, -5.5, -4.1, "lower"), diff(-0.3, -0.9, 0.3, "no detectable difference")
    close, far = diff(-0.2, -0.8, 0.4, "no detectable difference"), diff(-0.5, -1.6, 0.6, "no detectable difference")
    assert claim_no_schedule(summary(gap, close))[0] == HOLDS
    assert claim_no_schedule(summary(gap, far))[0] == PARTLY  # no difference found, but a 1.6-point loss not ruled out
    assert claim_no_schedule(summary(gap, diff(-2, -3, -1, "lower")))[0] == PARTLY
    assert claim_no_schedule(summary(no_gap, diff(-2, -3, -1, "lower")))[0] == NOT_HOLD
    assert claim_no_schedule(None)[0] == NOT_TESTED
    checks = [{"claim": "a", "holds": True, "evidence": "e"}, {"claim": "b", "holds": False, "evidence": "e"}]
    assert claim_figure4({"figure4": checks})[0] == PARTLY and claim_figure4({"figure4": checks[:1]})[0] == HOLDS
    assert claim_figure4({})[0] == NOT_TESTED


def funnel_run(seed: int, scales: dict[str, list[float]], gains: dict[str, list[list[float]]]) -> Run:
    steps = list(range(0, 10 * len(next(iter(scales.values()))), 10))
    metrics = [{"step": s, **{f"scale/{n}": v[i] for n, v in scales.items()}} for i, s in enumerate(steps)]
    arrays = {"step": np.asarray(steps), **{f"gain/{n}": np.asarray(g) for n, g in gains.items()}}
    summary = {"status": "finished", "final": {}, "config": {"seed": seed, "label": "Funnel"}}
    return Run(Path(f"run{seed}"), f"run{seed}", metrics, summary, arrays)


def test_figure4_description_counts_decays_rates_and_rising_gains(tmp_path):
    # layer a: scale 1 -> 0.5 (seed 0) and 1 -> 0.3 (seed 1), mean ratio 0.4; layer b: 1 -> 0.1 and 1 -> 0.1.
    # Gains (steps x coordinates): in a, coordinate 0 rises 1 -> 1.2 then falls to 1.0 (rises first), coordinate 1
    # only falls; in b, nothing rises 5%.
    a_gains = [[1.0, 1.0], [1.2, 0.9], [1.0, 0.8]]
    b_gains = [[1.0, 1.0], [1.04, 0.9], [1.0, 0.9]]
    runs = [funnel_run(0, {"a": [1, 0.7, 0.5], "b": [1, 0.5, 0.1]}, {"a": a_gains, "b": b_gains}),
            funnel_run(1, {"a": [1, 0.6, 0.3], "b": [1, 0.2, 0.1]}, {"a": a_gains, "b": b_gains})]
    lines = [sentence(c) for c in describe(runs)]
    assert lines[0].startswith("All scales decay: yes: 2 of 2 layers")
    assert lines[1].startswith("At different rates: yes:") and "from 0.1 (`b`) to 0.4 (`a`)" in lines[1]
    assert "yes: 2 of 8 sampled coordinates (25.0%)" in lines[2]  # coordinate 0 of a, in each of the 2 seeds
    growing = funnel_run(0, {"a": [1, 2, 3], "b": [1, 0.5, 0.1]}, {"a": a_gains})
    assert sentence(describe([growing])[0]).startswith("All scales decay: no: 1 of 2")
    alike = funnel_run(0, {"a": [1, 0.5, 0.3], "b": [1, 0.5, 0.2]}, {"a": b_gains})
    assert [c["holds"] for c in describe([alike])] == [True, False, False]
    out = figure(runs, tmp_path / "fig4.png", ("a", "b"))
    assert out.stat().st_size > 10_000 and out.with_suffix(".pdf").exists()
    with pytest.raises(ValueError, match=r"layers \['c'\] have no scale"):
        figure(runs, tmp_path / "x.png", ("a", "c"))


def test_schedule_gap_search_pairs_runs_that_differ_only_in_the_schedule(tmp_path):
    from scripts.schedule_gap_search import main

    def write(name, schedule, seed, top1, lr=0.05, status="finished"):
        config = {"schedule": {"_target_": f"funnel.train.schedules.{schedule}"}, "seed": seed,
                  "model": {"width": 16, "batch_norm": True}, "dataset": {"augment": True},
                  "optimizer": {"lr": lr, "weight_decay": 5e-3}, "trainer": {"epochs": 2}}
        run = tmp_path / "runs" / name
        run.mkdir(parents=True)
        (run / "metrics.jsonl").write_text('{"step": 0}\n')
        summary = {"status": status, "final": {"test/top1": top1}, "config": config, "wall_time_s": 100.0 + seed}
        (run / "summary.json").write_text(json.dumps(summary))

    write("a", "Staircase", 0, 88.0)
    write("b", "Constant", 0, 85.0)
    write("c", "Staircase", 1, 87.0)
    write("d", "Constant", 1, 83.0)
    write("e", "Staircase", 0, 10.0, lr=0.2)  # chance level: counted, not dropped
    write("f", "Constant", 0, 12.0, lr=0.2, status="diverged")
    (tmp_path / "runs" / "stopped").mkdir()  # stopped by hand: metrics but no summary, left out
    (tmp_path / "runs" / "stopped" / "metrics.jsonl").write_text('{"step": 0}\n')
    main([str(tmp_path / "runs"), "--out", str(tmp_path / "search.md")])
    lines = (tmp_path / "search.md").read_text().splitlines()
    assert len(lines) == 4
    assert lines[2] == ("| 16 | True | True | 0.005 | 2 | 0.05 | [0, 1] | 87.50 ± 0.71 | 84.00 ± 1.41 | 3.50 ± 0.71 "
                        "| 0 | 100 |")
    assert lines[3] == "| 16 | True | True | 0.005 | 2 | 0.2 | [0] | 10.00 | – | – | chance, diverged | 100 |"
