"""The tuning protocol notices change: a run that ended is reused only under the config the study would run now (the
real runner, the real configs, tiny fake data), and every bad input ends in one line, `error: ...`, exit code 1."""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import sys
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from experiments import protocol
from tests.helpers import compose_config, tiny


def write_study(folder: Path, **fields) -> Path:
    """A study of experiment=quick: AdaGrad tuned over lr (2 Halton trials, no extension), one final seed."""
    (folder / "search").mkdir(parents=True, exist_ok=True)
    (folder / "search" / "lr.yaml").write_text(yaml.safe_dump(
        {"knobs": {"optimizer.lr": {"min": 0.01, "max": 0.1, "scaling": "log"}}}))
    study = folder / "study.yaml"
    study.write_text(yaml.safe_dump({
        "experiment": "quick", "metric": "val/current/top1", "reduce": "final", "budget": 2, "seeds": [0],
        "max_extensions": 0, "search_dir": str(folder / "search"),
        "methods": {"adagrad": {"label": "AdaGrad", "base": ["arm=quick_adagrad"], "space": "lr"}}, **fields}))
    return study


def summaries(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("summary.json"))}


def refused(capsys, argv: list[str]) -> str:
    """The one line `main(argv)` ends with on stderr (exit code 1, no traceback)."""
    with pytest.raises(SystemExit) as exit_:
        protocol.main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 1 and err.startswith("error: ") and err.count("\n") == 1, err
    return err.strip()


@pytest.fixture(scope="module")
def ended(fake_data, tmp_path_factory):
    """A study that ran once, really trained (2 tuning trials and a final of 2 steps each): its file, its root and
    the --extra it ran with."""
    folder = tmp_path_factory.mktemp("ended")
    study, extra = write_study(folder), tiny("quick", fake_data)
    protocol.main([str(study), "--root", str(folder / "runs"), "--extra", *extra])
    return study, folder / "runs", extra


def copy_of(root: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "runs"
    shutil.copytree(root, copy)
    return copy


def test_the_same_command_again_reuses_every_run_and_says_so(ended, tmp_path):
    study, original, extra = ended
    first = json.loads((original / "protocol.json").read_text())
    assert first["reused"] == [] and [t["reused"] for t in first["methods"]["adagrad"]["trials"]] == [False, False]
    root = copy_of(original, tmp_path)
    before = summaries(root)
    protocol.main([str(study), "--root", str(root), "--extra", *extra])
    record = json.loads((root / "protocol.json").read_text())
    entry = record["methods"]["adagrad"]
    runs = [t["run"] for t in entry["trials"]] + entry["finals"]
    assert len(runs) == 3 and record["reused"] == runs  # every run checked against the config composed now
    assert all(t["reused"] for t in entry["trials"]) and entry["pick"] == first["methods"]["adagrad"]["pick"]
    assert summaries(root) == before  # nothing trained again


def test_another_extra_is_refused_in_one_line_and_nothing_is_retrained(ended, tmp_path, capsys):
    study, original, extra = ended
    root = copy_of(original, tmp_path)
    before = summaries(root)
    first_trial = root / json.loads((root / "protocol.json").read_text())["methods"]["adagrad"]["trials"][0]["run"]
    line = refused(capsys, [str(study), "--root", str(root), "--extra", *extra, "trainer.max_steps=3"])
    assert f"{first_trial} already ended under another config" in line
    assert "trainer.max_steps: 2 -> 3" in line and "another --root" in line and f"delete {first_trial}" in line
    assert summaries(root) == before


def test_a_launched_run_is_reused_under_its_config_and_refused_under_another(fake_data, tmp_path, capsys):
    """run.py composes (and records) the config in its own process; the protocol composes it here to compare."""
    root, launch, extra = tmp_path / "runs", ["--launch", sys.executable], ["--extra", *tiny("quick", fake_data)]
    fixed = write_study(tmp_path, search_dir=None,
                        methods={"adagrad": {"base": ["arm=quick_adagrad"], "space": "fixed"}})
    protocol.main([str(fixed), "--root", str(root), *launch, *extra])
    before = summaries(root)
    assert len(before) == 1 and json.loads((root / "protocol.json").read_text())["reused"] == []
    protocol.main([str(fixed), "--root", str(root), *launch, *extra])
    assert json.loads((root / "protocol.json").read_text())["reused"] == ["adagrad/finals/seed=0"]
    line = refused(capsys, [str(fixed), "--root", str(root), *launch, *extra, "optimizer.lr=0.5"])
    assert "optimizer.lr: 0.03 -> 0.5" in line and summaries(root) == before


class ScoredRunner:
    """Stands in for training, with the real configs: each run's summary holds the config the real runner composes
    for it (resolved), and its score peaks at lr = `best`."""

    def __init__(self, extra: list[str], best: float):
        self.extra, self.best, self.trained = extra, best, []

    def config(self, overrides: list[str], run_dir: Path) -> dict:
        cfg = compose_config([*overrides, *protocol.QUIET, "logger=none", *self.extra])
        return OmegaConf.to_container(cfg, resolve=True)

    def __call__(self, overrides: list[str], run_dir: Path) -> None:
        config = self.config(overrides, run_dir)
        self.trained.append(str(run_dir))
        score = 90 - 10 * (math.log10(config["optimizer"]["lr"]) - math.log10(self.best)) ** 2
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "metrics.jsonl").write_text(json.dumps({"step": 1, "val/top1": score}) + "\n")
        (run_dir / "summary.json").write_text(json.dumps({
            "status": "finished", "final": {"val/top1": score}, "phases": [{"name": "train", "start_step": 0}],
            "total_steps": 1, "config": config}))


def test_another_budget_that_moves_the_pick_refuses_the_old_finals(fake_data, tmp_path):
    (tmp_path / "search").mkdir()
    (tmp_path / "search" / "lr.yaml").write_text(yaml.safe_dump(
        {"knobs": {"optimizer.lr": {"min": 1e-3, "max": 1.0, "scaling": "log"}}}))
    study = lambda budget: protocol.Study(  # noqa: E731
        experiment="quick", metric="val/top1", reduce="final", budget=budget, seeds=[0], max_extensions=0,
        methods={"adagrad": {"label": "AdaGrad", "base": ["arm=quick_adagrad"], "space": "lr"}},
        search_dir=str(tmp_path / "search"))
    root, runner = tmp_path / "runs", ScoredRunner(tiny("quick", fake_data), best=0.2)
    record = protocol.run_study(study(1), root, runner)
    assert record["methods"]["adagrad"]["pick"] == {"optimizer.lr": 0.03162}  # Halton point 1
    final = root / "adagrad" / "finals" / "seed=0"
    before = (final / "summary.json").read_text()
    # 3 trials: points 2 and 3 are new (0.005623, 0.1778), point 1 is reused; the pick moves to 0.1778, so the
    # final trained at 0.03162 is no final of this study
    with pytest.raises(ValueError, match=re.escape(f"{final} already ended under another config") + ".*" +
                       re.escape("optimizer.lr: 0.03162 -> 0.1778")):
        protocol.run_study(study(3), root, runner)
    assert len(runner.trained) == 2 + 2 and (final / "summary.json").read_text() == before


def test_a_summary_that_cannot_be_checked_is_named_in_one_line(ended, tmp_path, capsys):
    study, original, extra = ended
    root = copy_of(original, tmp_path)
    final = root / "adagrad" / "finals" / "seed=0" / "summary.json"
    for garbage in ("{}", "not json {", '{"status": "finished", "config": null}'):
        final.write_text(garbage)
        line = refused(capsys, [str(study), "--root", str(root), "--extra", *extra])
        assert f"{final} is not a summary this study can check" in line and "another --root" in line
        assert final.read_text() == garbage


def bad_inputs(tmp_path: Path, extra: list[str]) -> dict[str, tuple[list[str], str]]:
    """Each bad input: (the arguments but --root, what its line says)."""
    study = str(write_study(tmp_path))
    variant = lambda name, **fields: str(write_study(tmp_path / name, **fields))  # noqa: E731
    (tmp_path / "peers.yaml").write_text(yaml.safe_dump({"methods": {}}))
    return {
        "missing study file": ([str(tmp_path / "nope.yaml")], f"no study file {tmp_path}/nope.yaml"),
        "unknown field": ([variant("typo", budgett=3)], "unknown fields ['budgett']"),
        "budget 0": ([study, "--budget", "0"], "the budget is a number of trials"),
        "negative budget": ([study, "--budget", "-2"], "at least 1; got -2"),
        "seeds not numbers": ([study, "--seeds", "a,b"], "--seeds takes whole numbers"),
        "no seeds": ([study, "--seeds", ""], "--seeds takes whole numbers"),
        "unknown space": ([variant("space", methods={"adagrad": {"space": "nosuch"}})],
                          "method adagrad: no search space 'nosuch'"),
        "methods_from with a folder": ([variant("up", methods_from="../peers.yaml")],
                                       "methods_from names a file beside the study file"),
        "missing methods_from": ([variant("gone", methods_from="absent.yaml")], "no methods file (methods_from)"),
        "missing search_dir": ([variant("dir", search_dir=str(tmp_path / "nowhere"))],
                               f"search_dir '{tmp_path}/nowhere' is not a folder"),
        "a bad override": ([study, "--extra", *extra, "trainer.nosuch=1"], "do not compose"),
        "a run that fails in-process": ([study, "--extra", *extra, "trainer.batch_size=-1"],
                                        "failed: ValueError: invalid trainer settings: trainer.batch_size=-1"),
        "a launched run that fails": ([study, "--launch", "false", "--extra", *extra],
                                      "run failed before it wrote a summary: false "),
    }


def test_every_bad_input_ends_in_one_line(fake_data, tmp_path, capsys):
    for name, (argv, says) in bad_inputs(tmp_path, tiny("quick", fake_data)).items():
        line = refused(capsys, [*argv, "--root", str(tmp_path / "runs" / name.replace(" ", "_"))])
        assert says in line, (name, line)
    assert not list((tmp_path / "runs").rglob("summary.json"))  # none of them trained anything


def test_a_second_protocol_on_the_same_root_ends_in_one_line(fake_data, tmp_path, capsys):
    root = tmp_path / "runs"
    root.mkdir()
    with protocol.study_lock(root, ["adagrad"]):  # as another protocol holds it while it runs the same methods
        line = refused(capsys, [str(write_study(tmp_path)), "--root", str(root), "--extra", *tiny("quick", fake_data)])
    assert line == (f"error: {root} is in use by process {os.getpid()}, which is running a study of the same methods "
                    "there; wait for it to end, or stop it, or give this study another --root")
    assert not list(root.rglob("summary.json"))


class Diverging:
    """A runner whose every run diverges."""

    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, overrides: list[str], run_dir: Path) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "metrics.jsonl").write_text("")
        (run_dir / "summary.json").write_text(json.dumps({"status": "diverged", "final": {}, "config": {}}))


def test_a_study_whose_trials_all_diverge_ends_in_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(protocol, "Runner", Diverging)
    line = refused(capsys, [str(write_study(tmp_path)), "--root", str(tmp_path / "runs")])
    assert line == f"error: adagrad: every one of 2 trials diverged or failed; see {tmp_path}/runs/adagrad/tune"


# Before: SIGTERM (a preempted job) killed the study where it stood, silently, losing the run in progress.
def test_sigterm_stops_the_study_in_one_line_with_the_run_checkpointed(fake_data, tmp_path):
    import signal
    import subprocess
    import time

    from funnel.train import checkpoint

    root = tmp_path / "runs"
    study = write_study(tmp_path, budget=1)
    extra = [*tiny("quick", fake_data), "trainer.max_steps=100000", "trainer.epochs=100000", "trainer.log_every=1"]
    process = subprocess.Popen([sys.executable, "-m", "experiments.protocol", str(study), "--root", str(root),
                                "--extra", *extra], cwd=protocol.ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not any(p.stat().st_size for p in root.rglob("metrics.jsonl")):  # training has started
        assert time.monotonic() < deadline and process.poll() is None, process.communicate()
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    lines = [line for line in err.splitlines() if line.strip()]
    assert process.returncode == 143 and "Traceback" not in err, err
    assert lines[-1].startswith("stopped by SIGTERM (a preemption or a kill): the study stopped. Run the same "
                                "command to go on")
    (run_dir,) = [p.parent for p in root.rglob("metrics.jsonl")]
    assert checkpoint.load(run_dir / checkpoint.LAST)["step"] > 0  # the step it stopped in, checkpointed
