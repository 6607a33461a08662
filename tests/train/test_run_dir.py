"""A run directory never lies: impossible settings stop before anything is written, a resume refuses a changed
config, one process at a time trains in a folder, and a checkpoint is committed whole."""
from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from funnel.train import checkpoint
from funnel.train.lock import RunDirectoryInUse, RunLock
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


def test_a_second_process_on_the_same_run_directory_stops_at_once(fake_data, tmp_path):
    """Two identical commands at once used to both train and write every metrics line twice."""
    with RunLock(tmp_path / "run"):  # held here as the first process's would be
        with pytest.raises(RunDirectoryInUse, match=f"in use by process {os.getpid()}"):
            train(quick(fake_data), tmp_path / "run")
    assert not (tmp_path / "run" / "metrics.jsonl").exists()
    train(quick(fake_data), tmp_path / "run")  # released: the run trains
    steps = [json.loads(line)["step"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps))


def test_the_lock_of_a_killed_process_is_taken_over(fake_data, tmp_path):
    code = ("import os, signal, sys; from funnel.train.lock import RunLock; "
            "RunLock(sys.argv[1]).__enter__(); os.kill(os.getpid(), signal.SIGKILL)")
    killed = subprocess.run([sys.executable, "-c", code, str(tmp_path / "run")])
    assert killed.returncode == -9 and (tmp_path / "run" / ".lock").read_text().strip().isdigit()
    train(quick(fake_data), tmp_path / "run")
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "finished"


def final_state(run_dir):
    ck = checkpoint.load(run_dir / checkpoint.LAST)
    with np.load(run_dir / "gains.npz") as gains:
        arrays = {k: gains[k] for k in gains.files}
    return ck, arrays, (run_dir / "metrics.jsonl").read_text()


def assert_same_run(a, b):
    (ck_a, gains_a, _), (ck_b, gains_b, _) = final_state(a), final_state(b)
    assert ck_a["step"] == ck_b["step"]
    assert all(torch.equal(ck_a["model"][k], ck_b["model"][k]) for k in ck_a["model"])
    assert gains_a.keys() == gains_b.keys() and all(np.array_equal(gains_a[k], gains_b[k]) for k in gains_a)


def straight_and_interrupted(fake_data, tmp_path):
    """The same run twice: straight through, and stopped right after step 4 (checkpoints at 2 and 4)."""
    overrides = ("optimizer=funnel_adagrad", "trainer.max_steps=6", "trainer.checkpoint_every=2")
    train(quick(fake_data, *overrides), tmp_path / "straight")
    interrupted(fake_data, tmp_path / "run", "optimizer=funnel_adagrad")
    return lambda: train(quick(fake_data, *overrides), tmp_path / "run")


def test_gain_trajectories_are_committed_with_the_checkpoint(fake_data, tmp_path):
    """A kill between the renames of last.pt and gains.npz used to lose trajectory rows for good, in a run that
    still ended "finished". The checkpoint now holds them: a stale gains.npz is rebuilt from it."""
    resume = straight_and_interrupted(fake_data, tmp_path)
    stale = checkpoint.load(tmp_path / "run" / checkpoint.PREVIOUS)["gains"]  # gains.npz as of step 2
    np.savez(tmp_path / "run" / "gains.npz", **{k: v.numpy() for k, v in stale.items()})
    resume()
    assert_same_run(tmp_path / "straight", tmp_path / "run")


def test_an_unreadable_checkpoint_falls_back_to_the_previous_one(fake_data, tmp_path, capsys):
    """A truncated last.pt used to end the resume in a bare EOFError or unpickling error."""
    resume = straight_and_interrupted(fake_data, tmp_path)
    last = tmp_path / "run" / checkpoint.LAST
    last.write_bytes(last.read_bytes()[:100])
    resume()
    out = capsys.readouterr().out
    assert "last.pt is unreadable" in out and "resuming from previous.pt (step 2)" in out
    assert_same_run(tmp_path / "straight", tmp_path / "run")


def test_no_readable_checkpoint_says_how_to_start_over(fake_data, tmp_path):
    interrupted(fake_data, tmp_path / "run")
    for name in (checkpoint.LAST, checkpoint.PREVIOUS):
        (tmp_path / "run" / name).write_bytes(b"")
    with pytest.raises(ValueError, match="no readable checkpoint in .* trainer.resume=false"):
        train(quick(fake_data, "trainer.max_steps=6", "trainer.checkpoint_every=2"), tmp_path / "run")


def test_a_torn_last_line_of_metrics_is_dropped_on_resume(fake_data, tmp_path, capsys):
    """A crash mid-write leaves half a JSON line: resuming used to stop at it until the file was edited by hand."""
    resume = straight_and_interrupted(fake_data, tmp_path)
    with open(tmp_path / "run" / "metrics.jsonl", "a") as f:
        f.write('{"step": 5, "train/lo')
    resume()
    assert "dropped its last line, cut short by an interrupted write" in capsys.readouterr().out
    strip = lambda text: [{k: v for k, v in json.loads(line).items() if not k.startswith("time/")}
                          for line in text.splitlines()]
    assert strip(final_state(tmp_path / "run")[2]) == strip(final_state(tmp_path / "straight")[2])


def test_wandb_online_without_a_server_falls_back_to_offline_within_seconds(fake_data, tmp_path, monkeypatch, capsys):
    """With a key but no reachable server, wandb.init used to block about 100 s and then fail the run."""
    monkeypatch.setenv("WANDB_API_KEY", "0" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.delenv("WANDB_MODE", raising=False)
    start = time.monotonic()
    train(compose_config(["experiment=quick", "logger=wandb", "logger.mode=online", *tiny("quick", fake_data)]),
          tmp_path / "run")
    assert time.monotonic() - start < 60
    out = capsys.readouterr().out
    assert "W&B online failed" in out and "wandb sync" in out
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "finished"
    assert list((tmp_path / "run").glob("wandb/offline-run-*/run-*.wandb")), "no offline run was written"


@pytest.fixture
def tiny_disk(tmp_path):
    """A 64 KB file system (a tmpfs; needs the right to mount, else the test is skipped)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_says_so_and_keeps_the_last_checkpoint(fake_data, tiny_disk):
    """torch.save on a full disk used to end in "unexpected pos 172160", a RuntimeError that named nothing."""
    with pytest.raises(OSError, match=r"could not write the checkpoint .*last.pt.tmp .* MB are free on that disk"):
        train(quick(fake_data, "trainer.max_steps=6", "trainer.checkpoint_every=2"), tiny_disk / "run")
    assert not list((tiny_disk / "run").rglob("*.tmp"))
