"""The runner as users start it: torchrun DDP, a killed run restarted with the same command, a multirun grid."""
from __future__ import annotations

import json
import subprocess
import time

import numpy as np
import pytest
import torch
import yaml

from experiments import select
from funnel.train import checkpoint
from tests.helpers import run_cli

TIME_KEYS = ("time/step_s", "time/samples_per_s", "time/elapsed_s")


def common(fake_data, run_dir):
    return ["experiment=quick", "logger=none", "trainer.progress_bar=false", "model=small_cnn",
            f"dataset.mnist_5k_path={fake_data}/mnist_5k.csv.gz", "optimizer=funnel_momentum", "optimizer.lr=0.05",
            "optimizer.gamma_p=1e-3", "optimizer.gamma_s=1e-2", "trainer.batch_size=64", "trainer.epochs=4",
            "trainer.log_every=5", "trainer.eval_every=10", f"hydra.run.dir={run_dir}"]


def check(result):
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


# Float64 rounding over the test's 24 steps moved no parameter by more than 2.8e-17 (measured on AMD EPYC); a
# gradient average off by one part in a million already moves them by more than 1e-10.
DDP_RTOL, DDP_ATOL = 1e-10, 1e-12


def test_two_ddp_processes_match_one(fake_data, tmp_path):
    """Same global batch on 1 and 2 gloo ranks: the same parameters and Funnel state up to float64 rounding.

    Both runs train in float64 (`trainer.dtype=float64`: model, inputs, optimizer state, all-reduce), so the
    rounding that differs between one sum over the batch and two half sums is ~1e-16 relative per step and the
    tolerance can be tight, independent of the CPU's fp32 kernels (in fp32 the same check failed on AMD EPYC by
    2.8e-6 while passing on Intel Xeon). The lr is small and the gains use the continuous (unnormalized) rule,
    so that training does not amplify rounding chaotically, yet gamma_p=1 moves the gains visibly.
    """
    args = lambda d: common(fake_data, d) + ["optimizer.lr=0.01", "optimizer.gamma_p=1.0", "optimizer.gamma_s=1e-3",
                                             "optimizer.normalize_gains=false", "trainer.dtype=float64"]
    check(run_cli(args(tmp_path / "one")))
    check(run_cli(args(tmp_path / "two"), torchrun=2))
    one, two = (checkpoint.load(tmp_path / d / checkpoint.LAST) for d in ("one", "two"))
    assert one["step"] == two["step"] == 24
    for key, value in one["model"].items():
        if value.is_floating_point():
            assert value.dtype == torch.float64, key
        torch.testing.assert_close(two["model"][key], value, rtol=DDP_RTOL, atol=DDP_ATOL, msg=key)
    gains = []
    for index, state in one["optimizer"]["state"].items():
        for key in ("gain", "scale", "momentum_buffer"):
            assert state[key].dtype == torch.float64, key
            torch.testing.assert_close(two["optimizer"]["state"][index][key], state[key], rtol=DDP_RTOL,
                                       atol=DDP_ATOL, msg=f"{index}/{key}")
        gains.append(state["gain"].flatten())
    assert (torch.cat(gains) - 1).abs().max() > 1e-3, "the gains never moved: Funnel was not exercised"
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert summary["world_size"] == 2 and len(summary["state_sha256"]) == 2
    assert summary["ranks_in_sync"], "model or optimizer state differs between the ranks"


def test_killed_run_resumes_bit_identical(fake_data, tmp_path):
    args = common(fake_data, tmp_path / "run") + ["trainer.checkpoint_every=10"]
    check(run_cli(common(fake_data, tmp_path / "straight") + ["trainer.checkpoint_every=10"]))
    killed = run_cli(args, fault=("kill", 15))
    assert killed.returncode == -9, "the run was not killed"
    assert checkpoint.load(tmp_path / "run" / checkpoint.LAST)["step"] == 10
    assert not (tmp_path / "run" / "summary.json").exists()
    check(run_cli(args))  # the same command again

    straight, resumed = (checkpoint.load(tmp_path / d / checkpoint.LAST) for d in ("straight", "run"))
    assert resumed["step"] == straight["step"] == 24
    for key in straight["model"]:
        assert torch.equal(straight["model"][key], resumed["model"][key]), key
    for index, state in straight["optimizer"]["state"].items():
        for key, value in state.items():
            other = resumed["optimizer"]["state"][index][key]
            assert torch.equal(value, other) if isinstance(value, torch.Tensor) else value == other, key

    strip = lambda path: [{k: v for k, v in json.loads(line).items() if k not in TIME_KEYS}
                          for line in path.read_text().splitlines()]
    assert strip(tmp_path / "run" / "metrics.jsonl") == strip(tmp_path / "straight" / "metrics.jsonl")
    with np.load(tmp_path / "run" / "gains.npz") as a, np.load(tmp_path / "straight" / "gains.npz") as b:
        assert a.files == b.files and all(np.array_equal(a[k], b[k]) for k in a.files)


def test_multirun_grid_over_gamma_p(fake_data, tmp_path):
    sweep = ["-m", "experiment=quick", "arm=quick_funnel", "logger=none", "trainer.progress_bar=false",
             f"dataset.mnist_5k_path={fake_data}/mnist_5k.csv.gz", "trainer.epochs=1",
             "trainer.objective=val/current/top1", f"hydra.sweep.dir={tmp_path}"]
    check(run_cli([*sweep, "optimizer.gamma_p=1e-5,1e-4,1e-3"]))
    runs = sorted(p.parent for p in tmp_path.glob("*/metrics.jsonl"))
    # a '/' in a value stays in one folder name
    assert [p.name for p in runs] == [f"arm=quick_funnel,optimizer.gamma_p={v},trainer.epochs=1,"
                                      "trainer.objective=val%2Fcurrent%2Ftop1" for v in ("0.0001", "0.001", "1e-05")]
    records = list((tmp_path / "sweeps").glob("*.yaml"))
    assert len(records) == 1
    record = yaml.safe_load(records[0].read_text())
    assert record["swept"] == ["optimizer.gamma_p"], "arm is set on the command line: not swept"
    assert record["overrides"][-1] == "optimizer.gamma_p=1e-5,1e-4,1e-3"
    for run in runs:
        summary = json.loads((run / "summary.json").read_text())
        assert summary["status"] == "finished"
        assert summary["config"]["optimizer"]["gamma_p"] == float(run.name.split(",")[1].split("=")[1])
        launch = summary["config"]["launch"]
        assert launch["sweep"] == record["sweep"] == records[0].stem and launch["arm"] == "quick_funnel"
        assert f"optimizer.gamma_p={run.name.split(',')[1].split('=')[1]}" in launch["overrides"]

    # another sweep of the same experiment keeps its own record; the run it shares is not trained again, yet it
    # is one of this sweep's runs: select ranks both points
    result = run_cli([*sweep, "optimizer.gamma_p=1e-3,1e-2"])
    check(result)
    assert "already finished" in result.stdout
    second = [p for p in (tmp_path / "sweeps").glob("*.yaml") if p != records[0]]
    assert len(second) == 1
    assert len(second[0].with_suffix(".runs").read_text().splitlines()) == 2
    selection = select.select(second[0])
    assert selection["swept"] == ["optimizer.gamma_p"] and len(selection["points"]) == 2
    # the same sweep with only where-it-runs settings changed (logger, progress bar) is the same sweep
    check(run_cli([*sweep, "optimizer.gamma_p=1e-3,1e-2", "trainer.progress_bar=true"]))
    assert len(list((tmp_path / "sweeps").glob("*.yaml"))) == 2


def test_a_diverged_point_does_not_stop_the_sweep(fake_data, tmp_path):
    result = run_cli(["-m", "experiment=quick", "arm=quick_adagrad", "optimizer=sgd", "model=small_cnn",
                      "logger=none", "trainer.progress_bar=false", f"dataset.mnist_5k_path={fake_data}/mnist_5k.csv.gz",
                      "trainer.epochs=1", "optimizer.lr=inf,0.01", f"hydra.sweep.dir={tmp_path}"])
    check(result)
    status = {p.parent.name: json.loads(p.read_text())["status"] for p in tmp_path.glob("*/summary.json")}
    assert sorted(status.values()) == ["diverged", "finished"]


def test_a_stalled_ddp_rank_ends_the_run_within_the_timeout(fake_data, tmp_path):
    """Rank 1 stops answering after step 3: rank 0 used to wait in its next all-reduce for torch's default 30
    minutes, with no output. With trainer.ddp_timeout_s=5 the run fails within seconds, not the 2-minute stall."""
    args = common(fake_data, tmp_path / "run") + ["trainer.ddp_timeout_s=5", "trainer.checkpoint_every=0"]
    start = time.monotonic()
    result = run_cli(args, torchrun=2, fault=("stall", 3), timeout=110)
    assert result.returncode != 0 and time.monotonic() - start < 100
    assert "error: RanksTimedOut: rank 0 of 2: the other ranks did not answer within trainer.ddp_timeout_s=5 s" \
        in result.stderr, result.stderr[-3000:]
    assert not (tmp_path / "run" / "summary.json").exists()


@pytest.mark.slow
def test_a_fault_the_user_can_fix_ends_in_one_line(fake_data, tmp_path):
    """Faults that used to end in raw tracebacks: a checkpoint nobody can read, an experiment's setting for another
    dataset, a trainer setting below its bound. Each ends with exit code 1 and one line that says what and where."""
    args = common(fake_data, tmp_path / "run") + ["trainer.checkpoint_every=10"]
    check(run_cli(args))
    (tmp_path / "run" / "summary.json").unlink()
    for name in (checkpoint.LAST, checkpoint.PREVIOUS):
        (tmp_path / "run" / name).write_bytes(b"")
    cases = {"no readable checkpoint": args,
             "build_cifar10 got an unexpected keyword argument 'base'":
                 ["experiment=quick", "logger=none", "dataset=cifar10", f"dataset.root={fake_data}",
                  f"hydra.run.dir={tmp_path / 'cifar'}"],
             "trainer.batch_size=0 must be >= 1": common(fake_data, tmp_path / "zero") + ["trainer.batch_size=0"]}
    for message, case in cases.items():
        result = run_cli(case)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
        assert lines[-1].startswith("error: ") and message in lines[-1], lines[-1]


def test_a_read_only_run_directory_ends_in_one_line(fake_data, tmp_path):
    """Resuming in a read-only folder used to fail inside Hydra's logging setup ("Unable to configure handler
    'file'"). Hydra now writes nothing there, and the runner's first write names the problem."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        args = common(fake_data, disk / "run") + ["trainer.checkpoint_every=10"]
        check(run_cli(args))
        (disk / "run" / "summary.json").unlink()
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        result = run_cli(args)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
        assert lines[-1].startswith("error: OSError: [Errno 30] Read-only file system"), lines[-1]
        fresh = run_cli(common(fake_data, disk / "fresh"))  # a new run: Hydra's own mkdir used to raise
        lines = [line for line in fresh.stderr.splitlines() if line.strip()]
        assert fresh.returncode == 1 and "Traceback" not in fresh.stderr, fresh.stderr[-2000:]
        assert lines[-1].startswith(f"error: OSError: cannot make the run folder {disk / 'fresh'} (Read-only file "
                                    "system): set hydra.run.dir="), lines[-1]
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def test_ctrl_c_ends_the_step_with_a_checkpoint_and_one_line_that_says_how_to_resume(fake_data, tmp_path):
    """The first Ctrl-C ends the step it came in and checkpoints there (it used to lose the steps since the last
    checkpoint); a second one stops at once, from the last scheduled checkpoint."""
    args = common(fake_data, tmp_path / "run") + ["trainer.checkpoint_every=10"]
    interrupted = run_cli(args, fault=("interrupt", 15))
    assert interrupted.returncode == 130
    lines = interrupted.stderr.strip().splitlines()
    assert "Traceback" not in interrupted.stderr and len(lines) == 1, interrupted.stderr
    assert lines[0].startswith("interrupted (Ctrl-C, SIGINT) at step 15; it resumes from step 15 (a checkpoint "
                               "written on stopping). Run the same command to resume: python run.py experiment=quick "
                               "logger=none")
    assert "stopped: Interrupted" in (tmp_path / "run" / "run.log").read_text()
    assert checkpoint.load(tmp_path / "run" / checkpoint.LAST)["step"] == 15
    check(run_cli(args))  # the command it printed
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["steps"] == 24

    args = common(fake_data, tmp_path / "twice") + ["trainer.checkpoint_every=10"]
    twice = run_cli(args, fault=("interrupt-twice", 15))
    assert twice.returncode == 130 and "Traceback" not in twice.stderr, twice.stderr
    assert "at step 15; it resumes from step 10 (its last checkpoint)" in twice.stderr.strip().splitlines()[-1]
    assert checkpoint.load(tmp_path / "twice" / checkpoint.LAST)["step"] == 10


def test_without_a_terminal_progress_is_a_few_lines_also_in_run_log(fake_data, tmp_path):
    args = [a for a in common(fake_data, tmp_path / "run") if a != "trainer.progress_bar=false"]
    result = run_cli([*args, "trainer.eval_every=1", "trainer.log_every=1", "label=Mine"])
    check(result)
    assert "\r" not in result.stdout and "it/s" not in result.stdout + result.stderr, "tqdm wrote frames to a pipe"
    progress = [line for line in result.stdout.splitlines() if line.startswith("Mine seed=0: step ")]
    assert 10 <= len(progress) <= 21 and progress[-1].startswith("Mine seed=0: step 24/24 loss=")
    logged = (tmp_path / "run" / "run.log").read_text().splitlines()
    assert [line.split(" ", 2)[2] for line in logged[:len(progress)]] == progress
    assert "finished after 24 steps" in logged[-1]


def test_a_run_without_overrides_gets_its_own_folder(fake_data, tmp_path):
    # run_root, the data path, the logger and the bar are left out of run directory names
    check(run_cli(["experiment=quick", f"run_root={tmp_path}", "logger=none",
                   f"dataset.mnist_5k_path={fake_data}/mnist_5k.csv.gz"]))
    assert [p.name for p in tmp_path.iterdir()] == ["quick"]
    assert json.loads((tmp_path / "quick" / "defaults" / "summary.json").read_text())["status"] == "finished"
    # a run an earlier version kept in the experiment's folder itself is pointed at, not silently left behind
    (tmp_path / "quick" / "defaults").rename(tmp_path / "old")
    for f in (tmp_path / "old").iterdir():
        f.rename(tmp_path / "quick" / f.name)
    result = run_cli(["experiment=quick", f"run_root={tmp_path}", "logger=none",
                      f"dataset.mnist_5k_path={fake_data}/mnist_5k.csv.gz"])
    check(result)
    assert f"note: {tmp_path / 'quick'} holds this command's run as an earlier version named it" in result.stdout


def test_the_interrupt_line_says_where_the_next_start_begins(monkeypatch):
    from funnel.cli import interrupted_line
    from funnel.train.loop import Interrupted

    monkeypatch.setattr("sys.argv", ["run.py", "experiment=quick"])
    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    assert interrupted_line(Interrupted(7, 0), resume=True).startswith(
        "interrupted (Ctrl-C, SIGINT) at step 7, before its first checkpoint (trainer.checkpoint_every): the next "
        "start begins at step 0. To start it: python run.py experiment=quick")
    assert "trainer.resume=false, so the next start begins at step 0" in interrupted_line(Interrupted(7, 5), False)
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "x")  # under torchrun the command is torchrun's
    assert interrupted_line(Interrupted(7, 5), True).endswith("torchrun <the same options> python run.py "
                                                              "experiment=quick")
