"""hparams_search=funnel_quick through the real Optuna sweeper (`run.py -m`), each trial a real run on tiny data: the
study's result against the trials' own summary.json, one run directory per trial, diverged trials."""
from __future__ import annotations

import json

import pytest
import yaml

from tests.helpers import run_cli, tiny

pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="the optuna extra: pip install -e '.[optuna]'")

# The search space that configs/hparams_search/funnel_quick.yaml documents (those of configs/search/funnel_adagrad).
RANGES = {"optimizer.lr": (1e-3, 1.0), "optimizer.gamma_p": (1e-4, 1e-1), "optimizer.gamma_s": (1e-4, 1e-1)}


def search(fake_data, sweep_dir, trials: int, *extra: str):
    # batch_size=10: two steps then leave the trials' accuracies apart (at the default 100 they all tie)
    return run_cli(["-m", "experiment=quick", "hparams_search=funnel_quick", f"hydra.sweeper.n_trials={trials}",
                    *tiny("quick", fake_data), "trainer.batch_size=10", "logger=none", f"hydra.sweep.dir={sweep_dir}",
                    *extra])


def check(result):
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def trials(sweep_dir) -> dict:
    """Each trial's run directory name -> its summary.json."""
    return {p.parent.name: json.loads(p.read_text()) for p in sweep_dir.glob("*/summary.json")}


def drawn(summary) -> dict:
    return {key: summary["config"]["optimizer"][key.split(".")[1]] for key in RANGES}


def test_search_picks_the_best_trial_of_its_runs(fake_data, tmp_path):
    check(search(fake_data, tmp_path, 3))
    runs = trials(tmp_path)
    assert len(runs) == 3, sorted(runs)  # one run directory per trial: every draw differs
    for name, summary in runs.items():
        assert summary["status"] == "finished" and summary["config"]["label"] == "Funnel (AdaGrad)"  # arm=quick_funnel
        assert summary["objective"] == summary["final"]["val/current/top1"]
        values = drawn(summary)
        assert all(low <= values[key] <= high for key, (low, high) in RANGES.items()), values
        # the trial's values are in its directory's name (sorted keys; the name is cut after them)
        assert name.startswith("arm=quick_funnel,hparams_search=funnel_quick," + ",".join(
            f"{key}={values[key]!r}" for key in sorted(RANGES)) + ","), name

    result = yaml.safe_load((tmp_path / "optimization_results.yaml").read_text())
    best = max(summary["objective"] for summary in runs.values())
    assert len({summary["objective"] for summary in runs.values()}) > 1, "the trials tie: the pick is untested"
    assert result["best_value"] == best  # maximized: the highest final validation accuracy of the runs
    assert result["best_params"] in [drawn(s) for s in runs.values() if s["objective"] == best]


def test_diverged_trials_fail_and_a_restart_reads_the_ended_runs(fake_data, tmp_path):
    """lr 1e30 diverges: such a trial is recorded as failed and the study goes on; the same command again skips every
    run that ended (the same seed draws the same points, so the same directories) and reaches the same result."""
    args = (fake_data, tmp_path, 3, "optimizer.lr=choice(0.03,1e30)")
    check(search(*args))
    runs = trials(tmp_path)
    status = sorted(summary["status"] for summary in runs.values())
    assert len(runs) == 3 and "diverged" in status and "finished" in status, status
    result = yaml.safe_load((tmp_path / "optimization_results.yaml").read_text())
    finished = [s for s in runs.values() if s["status"] == "finished"]
    assert result["best_value"] == max(s["objective"] for s in finished)
    assert result["best_params"]["optimizer.lr"] == 0.03

    again = search(*args)
    check(again)
    assert again.stdout.count("already diverged") == status.count("diverged")
    assert trials(tmp_path) == runs  # nothing trained again
    assert yaml.safe_load((tmp_path / "optimization_results.yaml").read_text()) == result
