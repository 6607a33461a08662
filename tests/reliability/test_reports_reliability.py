"""The readers of run folders on damaged and disagreeing files: real runs (tiny, trained on the fake data as
tests/experiments/conftest.py trains them), then a line torn or garbage, metrics.jsonl cut short beside the summary of
the full run, gains.npz or summary.json garbage. Each reader goes on with what it can read and names what is wrong in
one warning line per run; a run whose summary.json and metrics.jsonl disagree is never finished, nor ranked so."""
from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from experiments import analysis, plot_runs, protocol, select
from experiments.runs import find_runs
from funnel.train.loop import train
from tests.helpers import QUIET, ROOT, compose_config

# The demo's sweep (experiment=quick), three phases of two steps: metrics.jsonl holds steps 0 to 6, one line each.
QUICK = ["trainer.epochs=1", "trainer.log_every=1", "trainer.eval_every=1", "trainer.checkpoint_every=0", "logger=none",
         *QUIET]
ADAGRAD, FUNNEL = "arm=quick_adagrad", "arm=quick_funnel"  # Funnel writes gains.npz
METRIC = "val/current/top1"


@pytest.fixture(scope="module")
def sweep(fake_data, tmp_path_factory):
    """multirun/quick with one run of each arm, trained in this process on the real composed config."""
    root = tmp_path_factory.mktemp("multirun") / "quick"
    for name in (ADAGRAD, FUNNEL):
        cfg = compose_config(["experiment=quick", name,
                              f"dataset.mnist_5k_path={fake_data}/mnist_5k.csv.gz", *QUICK])
        train(cfg, root / name)
    lines = (root / FUNNEL / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == list(range(7))  # what the damage below counts on
    assert json.loads((root / FUNNEL / "summary.json").read_text())["steps"] == 6
    return root


def copy(sweep: Path, tmp_path: Path, *names: str) -> Path:
    """A folder holding the named runs of the sweep (both by default)."""
    folder = tmp_path / "quick"
    for name in names or (ADAGRAD, FUNNEL):
        shutil.copytree(sweep / name, folder / name)
    return folder


def lines(run_dir: Path) -> list[str]:
    return (run_dir / "metrics.jsonl").read_text().splitlines()


def write_lines(run_dir: Path, kept: list[str], end: str = "\n") -> None:
    (run_dir / "metrics.jsonl").write_text("\n".join(kept) + end)


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def one_run(folder: Path, name: str):
    (run,) = [r for r in find_runs(folder) if r.path.name == name]
    return run


def warnings(err: str) -> list[str]:
    return [line for line in err.splitlines() if line]


def table(out: str) -> list[list[str]]:
    """select's table rows below its header, split into words."""
    lines_ = out.splitlines()
    start = next(i for i, line in enumerate(lines_) if line.startswith("rank"))
    return [line.split() for line in lines_[start + 1:] if line[:1].isdigit()]


def cli(module: str, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", f"experiments.{module}", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


INCONSISTENT = "summary.json says finished at step 6, but metrics.jsonl's last readable step is 3"


# ------------------------------------------------------------------------------------------ lines that hold no record
def test_a_garbage_line_and_a_torn_last_line_are_skipped_and_named(sweep, tmp_path, capsys):
    folder = copy(sweep, tmp_path, FUNNEL)
    run_dir = folder / FUNNEL
    whole = lines(run_dir)
    write_lines(run_dir, [*whole[:3], "\x00\x00 garbage {", *whole[3:]])  # line 4
    run = one_run(folder, FUNNEL)
    assert run.metrics == [json.loads(line) for line in whole]
    assert run.problems == ["metrics.jsonl has 1 unreadable line (line 4), skipped"]
    assert analysis.finished(run)  # nothing lost: the last step agrees with summary.json
    assert warnings(capsys.readouterr().err) == [f"warning: {run_dir}: {run.problems[0]}"]

    # a run killed mid-write: no summary.json, its last line cut short
    (run_dir / "summary.json").unlink()
    write_lines(run_dir, [*whole[:-1], whole[-1][:40]], end="")
    run = one_run(folder, FUNNEL)
    assert run.metrics == [json.loads(line) for line in whole[:-1]]
    assert run.problems == ["metrics.jsonl has 1 unreadable line (line 7), skipped"] and run.status == "unfinished"
    assert warnings(capsys.readouterr().err) == [f"warning: {run_dir}: {run.problems[0]}"]


# ------------------------------------------------------------------------------------- files that disagree
def test_metrics_cut_short_beside_the_full_summary_is_inconsistent_never_finished(sweep, tmp_path, capsys):
    folder = copy(sweep, tmp_path)
    run_dir = folder / FUNNEL
    write_lines(run_dir, lines(run_dir)[:4])  # steps 0-3; summary.json says finished at step 6 (a retrain killed)
    run = one_run(folder, FUNNEL)
    assert not analysis.finished(run) and analysis.final(run, METRIC) is None
    assert analysis.score(run, METRIC, "final") == -math.inf
    assert protocol.trial_score(run_dir, METRIC, "final")[0] == -math.inf  # a tuning trial never wins with it
    assert run.status == "inconsistent" and run.inconsistent == INCONSISTENT
    assert run.problems == [f"inconsistent: {INCONSISTENT}; not counted as finished"]
    assert f"warning: {run_dir}: {run.problems[0]}" in warnings(capsys.readouterr().err)

    # the final line torn: the record of the last step is lost, so the files disagree too
    adagrad = folder / ADAGRAD
    whole = lines(adagrad)
    write_lines(adagrad, [*whole[:-1], whole[-1][:30]], end="")
    run = one_run(folder, ADAGRAD)
    assert not analysis.finished(run) and run.status == "inconsistent"
    assert run.problems == ["metrics.jsonl has 1 unreadable line (line 7), skipped",
                            "inconsistent: summary.json says finished at step 6, but metrics.jsonl's last readable "
                            "step is 5; not counted as finished"]


def test_select_ranks_an_inconsistent_run_as_a_failure_and_lists_why(sweep, tmp_path):
    folder = copy(sweep, tmp_path)
    run_dir = folder / FUNNEL
    write_lines(run_dir, lines(run_dir)[:4])
    ranked = select.select(folder)["points"]
    assert [p.failures for p in ranked] == [0, 1] and ranked[1].runs[0].status == "inconsistent"
    assert ranked[0].runs[0].path.name == ADAGRAD and math.isnan(ranked[1].mean)
    result = cli("select", folder)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert warnings(result.stderr) == [f"warning: {run_dir}: inconsistent: {INCONSISTENT}; not counted as finished"]
    out = result.stdout.splitlines()
    assert f"1 runs are inconsistent (counted as failures, never as finished): {run_dir} ({INCONSISTENT})" in out
    header = next(line for line in out if line.startswith("rank"))
    assert header.split()[-4:] == ["finished", "diverged", "unfinished", "inconsistent"]
    rows = table(result.stdout)
    assert [r[1] for r in rows] == ["AdaGrad", '"Funnel']  # the inconsistent run ranks below the finished one
    assert rows[0][-4:] == ["1", "0", "0", "0"] and rows[1][-5:] == ["–", "0", "0", "0", "1"]
    assert out[-1].startswith("best: label=AdaGrad ")


def test_the_record_in_summary_json_names_lost_lines_and_steps(sweep, tmp_path, capsys):
    """summary.json's "record" (the runner writes it since records were counted): fewer lines at the right last step
    are named but the run stands; steps lost before the run ended are named; its last_step decides agreement. A
    summary with neither "record" nor "steps" (as test fakes write) is taken as it is."""
    folder = copy(sweep, tmp_path, FUNNEL)
    run_dir = folder / FUNNEL
    whole = lines(run_dir)
    full = summary(run_dir)
    full["record"] = {"lines": 7, "last_step": 6, "missing_steps": [], "complete": True}

    def read(kept: list[str], **changes):
        write_lines(run_dir, kept)
        (run_dir / "summary.json").write_text(json.dumps({**full, **changes}))
        return one_run(folder, FUNNEL)

    run = read([*whole[:2], *whole[3:]])  # the line of step 2 lost
    assert run.problems == ["metrics.jsonl has 6 readable lines of the 7 summary.json recorded: 1 missing"]
    assert analysis.finished(run)
    run = read(whole, record={**full["record"], "missing_steps": [[2, 3], [5, 5]], "complete": False})
    assert run.problems == ["its record misses steps 2-3, 5 (lost before the run ended)"] and analysis.finished(run)
    without_steps = {k: v for k, v in full.items() if k != "steps"}
    (run_dir / "summary.json").write_text(json.dumps(without_steps))
    write_lines(run_dir, whole[:4])
    run = one_run(folder, FUNNEL)
    assert run.inconsistent == INCONSISTENT and not analysis.finished(run)  # record.last_step, without "steps"
    assert warnings(capsys.readouterr().err)[-1] == f"warning: {run_dir}: inconsistent: {INCONSISTENT}; not counted " \
                                                   "as finished"
    bare = {k: v for k, v in without_steps.items() if k != "record"}
    (run_dir / "summary.json").write_text(json.dumps(bare))
    run = one_run(folder, FUNNEL)
    assert analysis.finished(run) and run.problems == []  # nothing to check it against


# ------------------------------------------------------------------------------------------ gains.npz, summary.json
def test_a_garbage_gains_npz_is_named_and_read_as_no_trajectories(sweep, tmp_path):
    folder = copy(sweep, tmp_path)
    (folder / FUNNEL / "gains.npz").write_bytes(b"PK\x03\x04 not a zip archive")
    (folder / ADAGRAD / "gains.npz").write_bytes(b"\x80\x04 garbage")  # numpy would take it for a pickle
    result = cli("plot_runs", folder, "--out", tmp_path / "curves.png")
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert warnings(result.stderr) == [
        f"warning: {folder / name}: gains.npz is unreadable (not an .npz archive): read as no gain trajectories"
        for name in (ADAGRAD, FUNNEL)]
    assert result.stdout.splitlines()[-1] == f"plot: {tmp_path / 'curves.png'} (and .pdf, .svg)"
    run = one_run(folder, FUNNEL)
    assert run.gains == {} and analysis.finished(run)


@pytest.mark.parametrize("text, problem", [
    ("{'status': garbage", "summary.json is not valid JSON (Expecting property name enclosed in double quotes: line 1 "
                           "column 2 (char 1)): taken as not ended"),
    ("", "summary.json is empty: taken as not ended"),
    ("{}", 'summary.json has no "status": taken as not ended'),
    ("no status", 'summary.json has no "status": taken as not ended'),
])
def test_an_unreadable_summary_is_named_and_the_run_taken_as_not_ended(sweep, tmp_path, capsys, text, problem):
    folder = copy(sweep, tmp_path)
    run_dir = folder / ADAGRAD
    if text == "no status":
        text = json.dumps({k: v for k, v in summary(run_dir).items() if k != "status"})
    (run_dir / "summary.json").write_text(text)
    run = one_run(folder, ADAGRAD)
    assert not analysis.finished(run) and run.summary is None and run.status == "unfinished"
    assert run.problems == [problem]
    line = f"warning: {run_dir}: {problem}"
    assert warnings(capsys.readouterr().err) == [line]
    plot_runs.main([str(folder), "--out", str(tmp_path / "curves.png")])
    captured = capsys.readouterr()
    assert warnings(captured.err) == [line] and f"= nan (unfinished)   metrics: {run_dir}/metrics.jsonl" in captured.out
    # select: the run is read from its checkpoint, as one that has not ended, and counted
    result = cli("select", folder)
    assert result.returncode == 0 and warnings(result.stderr) == [line], result.stderr
    rows = {r[1]: r[-3:] for r in table(result.stdout)}
    assert rows == {'"Funnel': ["1", "0", "0"], "AdaGrad": ["0", "0", "1"]}


# Before: a run folder that protocol.json listed was read wherever it pointed.
def test_a_protocol_json_cannot_point_a_report_outside_its_study(tmp_path):
    from experiments import compare
    from experiments.checks import WrongRuns

    for listed in ("../elsewhere", "/etc"):
        with pytest.raises(WrongRuns, match="which is not a folder under the study's root"):
            compare.runs_in(tmp_path, ["a/finals/seed=0", listed])
