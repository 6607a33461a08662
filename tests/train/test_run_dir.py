"""A run directory never lies: impossible settings stop before anything is written, a resume refuses a changed
config, one process at a time trains in a folder, and a checkpoint is committed whole."""
from __future__ import annotations

import json
import math
import re

import pytest

from funnel.train.loop import train
from tests.helpers import Crash, compose_config, crash_after, tiny


def quick(fake_data, *overrides):
    return compose_config(["experiment=quick", "logger=none", *tiny("quick", fake_data), *overrides])


IMPOSSIBLE = {
    "trainer.epochs=0": "trainer.epochs=0 must be >= 1",
    "trainer.epochs=-1": "trainer.epochs=-1 must be >= 1",
    "trainer.max_steps=0": "trainer.max_steps=0 must be >= 1",
    "trainer.batch_size=-5": "trainer.batch_size=-5 must be >= 1",
    "trainer.batch_size=0": "trainer.batch_size=0 must be >= 1",
    "trainer.log_every=0": "trainer.log_every=0 must be >= 1",
    "trainer.eval_batch_size=0": "trainer.eval_batch_size=0 must be >= 1",
    "trainer.epochs=1.5": "trainer.epochs=1.5 must be of type int",
    "+trainer.epoch=1": "unknown trainer setting(s) ['epoch']",
}


@pytest.mark.parametrize("override", list(IMPOSSIBLE))
def test_impossible_trainer_settings_stop_before_anything_is_written(fake_data, tmp_path, override):
    """Each of these used to train nothing (or crash midway) after writing files, some ending "finished"."""
    with pytest.raises(ValueError, match=re.escape(IMPOSSIBLE[override])):
        train(quick(fake_data, override), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def interrupted(fake_data, run_dir, *overrides):
    """A run stopped right after step 4, with its checkpoint of step 4 on disk (checkpoint every 2 of 6 steps)."""
    with pytest.raises(Crash):
        train(quick(fake_data, "trainer.max_steps=6", "trainer.checkpoint_every=2", *overrides), run_dir,
              after_step=crash_after(4))
    assert not (run_dir / "summary.json").exists()


CHANGED = {
    "optimizer.lr=0.3": "optimizer.lr: 0.1 -> 0.3",
    "optimizer.gamma_p=0.05": "optimizer.gamma_p: 0.0001 -> 0.05",
    "optimizer=adam": "optimizer._target_: 'funnel.optim.Funnel' -> 'torch.optim.Adam'",
    "trainer.max_steps=3": "trainer.max_steps: 6 -> 3",
    "seed=1": "seed: 0 -> 1",
    "dataset.noise_threshold=0.5": "dataset.noise_threshold:",
}


@pytest.mark.parametrize("override", list(CHANGED))
def test_a_resume_under_another_config_is_refused(fake_data, tmp_path, override):
    """It used to train the first steps under one config and the rest under another (or ignore the change while
    summary.json recorded it, or crash, or report "finished" for steps it never trained)."""
    interrupted(fake_data, tmp_path / "run")
    with pytest.raises(ValueError, match="was written under another config") as err:
        train(quick(fake_data, "trainer.max_steps=6", "trainer.checkpoint_every=2", override), tmp_path / "run")
    assert CHANGED[override] in str(err.value) and "trainer.resume=false" in str(err.value)
    assert not (tmp_path / "run" / "summary.json").exists()
    train(quick(fake_data, "trainer.max_steps=6", "trainer.checkpoint_every=2"), tmp_path / "run")  # the same command


def test_a_resume_may_change_what_is_logged_and_records_it(fake_data, tmp_path):
    interrupted(fake_data, tmp_path / "run")
    train(quick(fake_data, "trainer.max_steps=6", "trainer.checkpoint_every=2", "trainer.log_every=3",
                "trainer.eval_batch_size=50"), tmp_path / "run")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["steps"] == 6
    assert summary["resumes"] == [{"step": 4, "changed": {"trainer.eval_batch_size": [1000, 50],
                                                          "trainer.log_every": [1, 3]}}]


def test_a_blow_up_that_stays_finite_is_diverged(fake_data, tmp_path):
    """At lr 1e30 the loss grows by orders of magnitude while staying finite: it used to end "finished" and rank
    among sane runs. Above trainer.diverge_factor (1e4) times the first loss it is diverged."""
    cfg = quick(fake_data, "optimizer=funnel_sgd", "optimizer.lr=1e30", "trainer.max_steps=6", "trainer.log_every=3")
    train(cfg, tmp_path / "run")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["final"] == {}
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(math.isfinite(v) for line in lines for k, v in line.items() if k == "train/loss")
    train(quick(fake_data, "optimizer=funnel_sgd", "optimizer.lr=1e30", "trainer.max_steps=6", "trainer.log_every=3",
                "trainer.diverge_factor=null"), tmp_path / "off")
    assert json.loads((tmp_path / "off" / "summary.json").read_text())["status"] == "finished"
