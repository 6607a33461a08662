"""The runner's red-team cases: each of these was a silent wrong or a traceback on main before issue 25 (the line
above each test says what it did then)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from funnel.cli import interrupted_line
from funnel.train import checkpoint
from funnel.train.loop import Interrupted, train
from funnel.train.records import MetricsLog
from tests.helpers import ROOT, Crash, compose_config, crash_after, run_cli, tiny

TIME_KEYS = ("time/step_s", "time/samples_per_s", "time/elapsed_s")


def quick(fake_data, *overrides):
    return compose_config(["experiment=quick", "logger=none", *tiny("quick", fake_data), "trainer.max_steps=6",
                           *overrides])


def cli_args(fake_data, run_dir, *overrides):
    """A 24-step run of the runner, logged every 5 steps and checkpointed every 10."""
    return ["experiment=quick", "logger=none", "trainer.progress_bar=false", "model=small_cnn",
            f"dataset.mnist_5k_path={fake_data}/mnist_5k.csv.gz", "optimizer=funnel_momentum", "optimizer.lr=0.05",
            "trainer.batch_size=64", "trainer.epochs=4", "trainer.log_every=5", "trainer.eval_every=10",
            "trainer.checkpoint_every=10", f"hydra.run.dir={run_dir}", *overrides]


def records(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k not in TIME_KEYS}
            for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def stopped_after(fake_data, run_dir, step, *overrides):
    """A run stopped right after `step`, as a crash or a kill would stop it."""
    with pytest.raises(Crash):
        train(quick(fake_data, *overrides), run_dir, after_step=crash_after(step))


def one_line(result, code=1) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == code and "Traceback" not in result.stderr, result.stderr[-3000:]
    return lines[-1]


# Before: Funnel's load_state_dict imported any "module:Name" its checkpoint named, at the load itself.
def test_a_checkpoint_cannot_make_the_runner_import_code(fake_data, tmp_path):
    run_dir = tmp_path / "run"
    args = cli_args(fake_data, run_dir, "optimizer=funnel_adagrad", "trainer.max_steps=12")
    assert run_cli(args, fault=("kill", 11)).returncode == -9
    marker = tmp_path / "imported"
    (run_dir / "planted.py").write_text(f"import pathlib, torch\npathlib.Path({str(marker)!r}).write_text('ran')\n"
                                        "class Inner(torch.optim.SGD):\n    pass\n")
    ck = checkpoint.load(run_dir / checkpoint.LAST)
    for group in ck["optimizer"]["param_groups"]:
        group["inner"] = "planted:Inner"
    torch.save(ck, run_dir / checkpoint.LAST)

    result = run_cli(args, env={"PYTHONPATH": str(run_dir)})  # the folder is importable, as a cwd would be
    line = one_line(result)
    assert "names inner='planted:Inner', this optimizer uses inner='adagrad'" in line
    assert not marker.exists(), "the checkpoint's module was imported"
    assert not (run_dir / "summary.json").exists()


# Before: a stored W&B id became part of a folder name as it was.
def test_a_stored_wandb_id_that_is_not_one_is_refused(tmp_path):
    from funnel.train.wandb_sink import RUN_ID_FILE, run_id

    (tmp_path / RUN_ID_FILE).write_text("../../elsewhere\n")
    with pytest.raises(ValueError, match="is not a W&B run id"):
        run_id(tmp_path, resumed=True)


# Before: "already finished", exit 0, the old config kept.
def test_a_finished_run_refuses_a_changed_command_naming_the_keys(fake_data, tmp_path):
    train(quick(fake_data), tmp_path / "run")
    with pytest.raises(ValueError, match=r"holds a run that finished under another config \(optimizer.lr: 0.1 -> "
                                         r"0.5\).*trainer.resume=false"):
        train(quick(fake_data, "optimizer.lr=0.5"), tmp_path / "run")
    edited = quick(fake_data)  # an arm's or experiment's file edited after the run: no override says so
    edited.dataset.noise_threshold = 0.5
    with pytest.raises(ValueError, match="dataset.noise_threshold"):
        train(edited, tmp_path / "run")
    # what is logged, and where the data lives, may change: the run is this command's
    train(quick(fake_data, "trainer.log_every=2", f"dataset.mnist_5k_path={fake_data}/./mnist_5k.csv.gz"),
          tmp_path / "run")
    train(quick(fake_data, "optimizer.lr=0.5", "trainer.resume=false"), tmp_path / "run")  # the way out it names
    assert summary(tmp_path / "run")["config"]["optimizer"]["lr"] == 0.5


# Before: the killed retrain left the old summary beside its own metrics and checkpoint; the folder read "finished".
def test_a_killed_retrain_never_leaves_the_old_summary_behind(fake_data, tmp_path):
    run_dir = tmp_path / "run"
    train(quick(fake_data, "trainer.checkpoint_every=2"), run_dir)
    stopped_after(fake_data, run_dir, 3, "trainer.checkpoint_every=2", "trainer.resume=false", "optimizer.lr=0.5")
    assert not (run_dir / "summary.json").exists()
    assert checkpoint.load(run_dir / checkpoint.LAST)["step"] == 2  # the retrain's, not the old run's 6
    assert not (run_dir / checkpoint.PREVIOUS).exists()
    from experiments import select

    runs, _ = select.find_runs(run_dir)
    assert [r.status for r in runs] == ["unfinished"]
    train(quick(fake_data, "trainer.checkpoint_every=2", "optimizer.lr=0.5"), run_dir)  # resumes the retrain
    assert summary(run_dir)["resumes"][0]["step"] == 2 and summary(run_dir)["config"]["optimizer"]["lr"] == 0.5


# Before: a summary and a metrics file that disagree read as "already finished".
def test_a_folder_whose_summary_and_metrics_disagree_is_not_finished(fake_data, tmp_path):
    train(quick(fake_data), tmp_path / "run")
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    (tmp_path / "run" / "metrics.jsonl").write_text("\n".join(lines[:3]) + "\n")  # steps 0 (at start), 1, 2
    with pytest.raises(ValueError, match="says the run finished at step 6, but its metrics.jsonl ends at step 2"):
        train(quick(fake_data), tmp_path / "run")


@pytest.mark.parametrize("content", ["", "{garbage", "{}"])
# Before: a JSONDecodeError without the file's name, or a KeyError.
def test_an_unreadable_summary_is_named_with_the_way_out(fake_data, tmp_path, content):
    train(quick(fake_data), tmp_path / "run")
    (tmp_path / "run" / "summary.json").write_text(content)
    with pytest.raises(ValueError, match=r"summary.json (is empty|is not valid JSON|has no .status.).*: delete it to "
                                         "train the run again"):
        train(quick(fake_data), tmp_path / "run")


# Before: a checkpoint between two log points lost the window's first steps: the next logged loss differed.
def test_a_resume_between_log_points_logs_what_a_straight_run_logs(fake_data, tmp_path):
    overrides = ("trainer.log_every=4", "trainer.checkpoint_every=3", "trainer.max_steps=8")
    train(quick(fake_data, *overrides), tmp_path / "straight")
    stopped_after(fake_data, tmp_path / "run", 5, *overrides)
    train(quick(fake_data, *overrides), tmp_path / "run")
    assert records(tmp_path / "run") == records(tmp_path / "straight")


# Before: metrics.jsonl deleted, then a resume: "finished", its first steps missing from the record, no notice.
def test_a_deleted_or_damaged_record_is_named_in_the_summary(fake_data, tmp_path, capsys):
    overrides = ("trainer.checkpoint_every=4", "trainer.log_every=1")
    stopped_after(fake_data, tmp_path / "run", 5, *overrides)
    (tmp_path / "run" / "metrics.jsonl").unlink()
    train(quick(fake_data, *overrides), tmp_path / "run")
    # steps 0 (the evaluation at the start) to 4
    assert "5 line(s) written before the checkpoint are missing (step 0-4)" in capsys.readouterr().out
    record = summary(tmp_path / "run")["record"]
    assert record == {"lines": 2, "last_step": 6, "missing_steps": [[0, 4]], "complete": False}

    stopped_after(fake_data, tmp_path / "mid", 5, *overrides)
    path = tmp_path / "mid" / "metrics.jsonl"
    lines = path.read_text().splitlines()
    path.write_text("\n".join([*lines[:2], "#%&garbage", *lines[3:]]) + "\n")  # step 2's line damaged
    train(quick(fake_data, *overrides), tmp_path / "mid")
    out = capsys.readouterr().out
    assert "dropped 1 unreadable line(s) (line 3): the file was damaged" in out
    assert summary(tmp_path / "mid")["record"]["missing_steps"] == [[2, 2]]


def test_missing_steps_are_told_as_stretches_of_the_logged_steps(tmp_path):
    log = MetricsLog(tmp_path / "metrics.jsonl")
    for step in (0, 5, 10, 15, 20):
        log.write({"step": step})
    log.close()
    (tmp_path / "metrics.jsonl").write_text('{"step": 0}\n{"step": 15}\n')
    saved = log.state_dict()
    resumed = MetricsLog(tmp_path / "metrics.jsonl", resume_step=20, saved=saved)
    assert resumed.summary() == {"lines": 2, "last_step": 15, "missing_steps": [[5, 10], [20, 20]],
                                 "complete": False}


# Before: SIGTERM (how SLURM preempts) ended the run with exit 143 and nothing on screen or in run.log, and lost the
# steps since the last checkpoint; the resume did not say it resumed.
def test_sigterm_checkpoints_the_step_says_so_and_the_resume_says_from_where(fake_data, tmp_path):
    run_dir = tmp_path / "run"
    args = cli_args(fake_data, run_dir)
    stopped = run_cli(args, fault=("terminate", 13))
    line = one_line(stopped, code=143)
    assert line.startswith("stopped by SIGTERM (a preemption or a kill) at step 13; it resumes from step 13 (a "
                           "checkpoint written on stopping). Run the same command to resume: python run.py ")
    assert "stopped: Interrupted: SIGTERM at step 13" in (run_dir / "run.log").read_text()
    resumed = run_cli(args)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"{run_dir}: resuming at step 13 of 24 from last.pt (written when SIGTERM stopped the run there)" \
        in resumed.stdout
    straight = run_cli(cli_args(fake_data, tmp_path / "straight"))
    assert straight.returncode == 0
    assert records(run_dir) == records(tmp_path / "straight")


# Before: resuming a 2-rank checkpoint with 1 process was allowed, and the summary recorded only the last world size.
def test_a_world_size_change_on_resume_is_said_and_recorded(fake_data, tmp_path):
    run_dir = tmp_path / "run"
    args = cli_args(fake_data, run_dir)
    killed = run_cli(args, torchrun=2, fault=("kill", 12))
    assert killed.returncode != 0 and checkpoint.load(run_dir / checkpoint.LAST)["step"] == 10
    resumed = run_cli(args)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "it trained as 2 process(es) and goes on as 1" in resumed.stdout
    ended = summary(run_dir)
    assert ended["resumes"][-1]["world_size"] == [2, 1] and ended["world_size"] == 1


# Before (each): a traceback, or torch's wording, or a run with the whole set as its batch and no notice.
WEAK = {
    "seed=abc": "seed='abc' must be an integer",
    "+optimizer.gama_p=1e-3": "optimizer.gama_p is not a setting of funnel.optim.Funnel (it takes: lr, momentum",
    "arm=quick_funnel optimizer=adagrad": "optimizer.gamma_p is not a setting of torch.optim.Adagrad",
    "trainer.batch_size=1000000000": "trainer.batch_size=1000000000 is larger than the training set",
    "trainer.device=gpu": "trainer.device='gpu' is not a device",
}
if not torch.cuda.is_available():
    WEAK["trainer.device=cuda"] = "trainer.device=cuda but torch finds no GPU on this machine"


@pytest.mark.parametrize("override", list(WEAK))
def test_a_bad_setting_is_refused_before_anything_is_written(fake_data, tmp_path, override):
    with pytest.raises(ValueError, match=WEAK[override].replace("(", r"\(").replace(".", r"\.")):
        train(quick(fake_data, *override.split()), tmp_path / "run")
    assert not (tmp_path / "run" / "summary.json").exists()


def test_bad_settings_end_in_one_line_from_the_command_line(fake_data, tmp_path):
    result = run_cli(cli_args(fake_data, tmp_path / "run", "seed=abc", "arm=quick_funnel", "optimizer=adagrad"))
    assert one_line(result).startswith("error: ValueError: ")
    (tmp_path / "file").write_text("")  # a file where the run folder goes: Hydra's own mkdir used to raise
    result = run_cli(cli_args(fake_data, tmp_path / "file"))
    assert one_line(result).startswith(f"error: FileExistsError: cannot make the run folder {tmp_path / 'file'}")


# Before: "the previous checkpoint is intact" when there was none.
def test_a_failed_first_checkpoint_does_not_claim_an_earlier_one(tmp_path, monkeypatch):
    def full(payload, path):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(OSError, match="the run has no earlier checkpoint"):
        checkpoint.save(tmp_path / checkpoint.LAST, {"step": 1})
    (tmp_path / checkpoint.LAST).write_bytes(b"an earlier one")
    with pytest.raises(OSError, match="the previous checkpoint is intact"):
        checkpoint.save(tmp_path / checkpoint.LAST, {"step": 2})


# Before: "interrupted before training started" for a Ctrl-C that came after the summary was written.
def test_a_stop_after_the_summary_says_the_run_ended(fake_data, tmp_path, monkeypatch):
    def interrupted_close(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(MetricsLog, "close", interrupted_close)
    with pytest.raises(Interrupted) as err:
        train(quick(fake_data), tmp_path / "run")
    assert summary(tmp_path / "run")["status"] == "finished"
    assert interrupted_line(err.value, resume=True) == ("interrupted (Ctrl-C, SIGINT) after the run ended (finished): "
                                                        "its summary.json is written, nothing is lost.")


def caught_signals(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return int(line.split()[1], 16)
    return 0


# Before: a Ctrl-C while the runner loaded its libraries ended in a KeyboardInterrupt traceback.
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc to see the handlers installed")
def test_ctrl_c_while_the_runner_loads_ends_in_one_line(fake_data, tmp_path):
    process = subprocess.Popen([sys.executable, "run.py", *cli_args(fake_data, tmp_path / "run")], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "HF_HUB_OFFLINE": "1"})
    deadline = time.monotonic() + 30
    while not caught_signals(process.pid) & (1 << (signal.SIGTERM - 1)):  # the runner's handlers are in place
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.005)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    lines = [line for line in err.splitlines() if line.strip()]
    assert process.returncode == 130 and "Traceback" not in err, err
    assert lines[-1].startswith("interrupted (Ctrl-C, SIGINT) ") and ("while the runner was loading" in lines[-1]
                                                                       or "before training started" in lines[-1])
    assert not (tmp_path / "run" / "summary.json").exists()
