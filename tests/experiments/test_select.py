"""experiments.select on run directories written by really training tiny runs: the ranking over paired seeds with
the failed runs counted, the printed overrides composed back by Hydra, the folders it refuses, its one-line errors."""
from __future__ import annotations

import json
import math
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from omegaconf import OmegaConf

from experiments import select
from tests.helpers import CONFIG_DIR, ROOT, Crash, compose_config, crash_after, run_cli, tiny

GRID = "quick-00000001"
# The grid's points, as a user types them: three keys swept together, with values that need Hydra's quoting (spaces,
# a comma, quotes, a list) and a float that only round-trips written in full. lr 1e6 diverges.
POINTS = [
    ["optimizer.lr=0.01", "label='Funnel (AdaGrad)'", "optimizer.gain_range=[0.0,1000.0]"],
    ["optimizer.lr=0.3333333333333333", "label='Funnel, lr 1/3'", "optimizer.gain_range=[0.5,2.0]"],
    ["optimizer.lr=1e6", "label='it\\'s \"big\"'", "optimizer.gain_range=[0.0,10.0]"],
]
LRS = [0.01, 1 / 3, 1e6]
SWEPT = ["label", "optimizer.gain_range", "optimizer.lr"]


def base(data) -> list[str]:
    quick = [o for o in tiny("quick", data) if not o.startswith("trainer.checkpoint_every")]
    return ["experiment=quick", "arm=quick_funnel", *quick, "trainer.checkpoint_every=1", "logger=none"]


def train_run(folder: Path, name: str, overrides: list[str], sweep: str | None, unrecorded: list[str] = (),
              after_step=None) -> Path:
    """Composes and trains one run, with `launch` filled in as the runner (funnel/cli.py) fills it; `unrecorded`
    overrides change the config without showing in launch.overrides (a config edited between two runs)."""
    from funnel.train.loop import train

    cfg = compose_config([*overrides, *unrecorded])
    cfg.launch = {"overrides": overrides, "arm": "quick_funnel", "sweep": sweep}
    run_dir = folder / name
    train(cfg, run_dir, after_step)
    return run_dir


@pytest.fixture(scope="module")
def grid(fake_data, tmp_path_factory):
    """One sweep: three points at seeds 0 and 1; at seed 2, a finished run of the first point and a run of the
    second that crashed after its first checkpoint (seed 2 is not at every point, so it is left out of the means)."""
    folder = tmp_path_factory.mktemp("multirun") / "quick"
    for i, point in enumerate(POINTS):
        for seed in (0, 1):
            train_run(folder, f"p{i},seed={seed}", [*base(fake_data), *point, f"seed={seed}"], GRID)
    train_run(folder, "p0,seed=2", [*base(fake_data), *POINTS[0], "seed=2"], GRID)
    with pytest.raises(Crash):
        train_run(folder, "p1,seed=2", [*base(fake_data), *POINTS[1], "seed=2"], GRID,
                  after_step=crash_after(1))
    return folder


def copy(grid: Path, tmp_path: Path, *names: str) -> Path:
    """A folder holding the named runs of the grid (all of them by default)."""
    folder = tmp_path / "quick"
    for run_dir in sorted(grid.iterdir()):
        if not names or run_dir.name in names:
            shutil.copytree(run_dir, folder / run_dir.name)
    return folder


def final(folder: Path, point: int, seed: int) -> float:
    """The final val/current/top1 of a run, read straight from its summary.json."""
    return json.loads((folder / f"p{point},seed={seed}" / "summary.json").read_text())["final"]["val/current/top1"]


def rows(text: str) -> list[list[str]]:
    """The table's rows below its header, split into cells."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("rank"))
    return [line.split("  ") for line in lines[start + 1:] if line[:1].isdigit()]


def cells(row: list[str]) -> list[str]:
    return [c.strip() for c in row if c.strip()]


def error_of(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        select.main([str(a) for a in argv])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


def test_points_ranked_over_paired_seeds_with_the_failed_runs_counted(grid, capsys):
    select.main([str(grid)])
    out = capsys.readouterr().out
    means = {i: np.mean([final(grid, i, seed) for seed in (0, 1)]) for i in (0, 1)}  # paired: seed 2 left out
    best, second = sorted(means, key=means.get, reverse=True)
    assert means[best] != means[second]  # the tiny runs do tell the two apart
    table = [cells(r) for r in rows(out)]
    # rank, label, gain_range, lr, score, finished, diverged, unfinished
    assert [r[0] for r in table] == ["1", "2", "3"]
    assert [float(r[3]) for r in table] == [LRS[best], LRS[second], 1e6]
    assert table[0][4].startswith(f"{means[best]:.4g} ± ") and table[1][4].startswith(f"{means[second]:.4g} ± ")
    assert table[0][1] == '"Funnel (AdaGrad)"' or table[1][1] == '"Funnel (AdaGrad)"'  # shown as Hydra reads it
    counts = {float(r[3]): r[5:] for r in table}
    assert counts[1e6] == ["0", "2", "0"] and table[2][4] == "–"  # both seeds diverged: last, never dropped
    assert counts[1 / 3] == ["2", "0", "1"]  # the crashed seed-2 run, read from its checkpoint
    assert counts[0.01] == ["3", "0", "0"]
    assert "mean ± std over seeds 0, 1 (seeds 2 are not at every point: left out)" in out
    assert out.splitlines()[-1] == "best: " + select.overrides_line(select.select(grid)["points"][0])
    # --reduce mean: the mean over each run's evaluations, read straight from metrics.jsonl
    ranked = select.select(grid, reduce="mean")["points"]
    expected = {}
    for i in (0, 1):
        per_seed = []
        for seed in (0, 1):
            lines = (grid / f"p{i},seed={seed}" / "metrics.jsonl").read_text().splitlines()
            per_seed.append(np.mean([r["val/current/top1"] for r in map(json.loads, lines) if "val/current/top1" in r]))
        expected[LRS[i]] = (np.mean(per_seed), np.std(per_seed, ddof=1))
    for point in ranked[:2]:
        assert (point.mean, point.std) == pytest.approx(expected[point.values["optimizer.lr"]])
    assert ranked[0].mean >= ranked[1].mean


def test_a_point_with_a_failed_run_ranks_below_the_points_whose_runs_all_finished(grid, tmp_path):
    folder = copy(grid, tmp_path)
    first, second = select.select(folder)["points"][:2]
    (first.runs[0].path / "summary.json").unlink()  # as if killed after its last checkpoint: unfinished
    ranked = select.select(folder)["points"]
    assert ranked[0].values == second.values and ranked[1].values == first.values
    assert (ranked[1].failures, ranked[1].count("unfinished")) == (1, first.count("unfinished") + 1)
    (kept,) = [r for r in first.runs[1:] if r.seed in (0, 1)]  # its one finished run at the paired seeds
    assert ranked[1].mean == json.loads((kept.path / "summary.json").read_text())["final"]["val/current/top1"]


def test_printed_overrides_compose_back_to_the_winner(grid, capsys):
    select.main([str(grid), "--print-overrides"])
    line = capsys.readouterr().out.strip()
    words = shlex.split(line)  # what the shell hands run.py
    assert sorted(w.split("=", 1)[0] for w in words) == SWEPT
    winner = select.select(grid)["points"][0].runs[0]
    summary = json.loads((winner.path / "summary.json").read_text())
    assert "'label=" in line  # a label with spaces is one shell word
    # the sweep's other overrides, then the printed ones: the winner's config, key for key
    others = [o for o in summary["config"]["launch"]["overrides"]
              if o.split("=", 1)[0] not in SWEPT]
    composed = OmegaConf.to_container(compose_config([*others, *words]), resolve=True)
    composed.pop("launch"), summary["config"].pop("launch")
    assert composed == summary["config"]
    assert composed["optimizer"]["lr"] in LRS[:2]  # not the diverged point


def test_override_values_round_trip_through_the_shell_and_hydra():
    values = ["Funnel (AdaGrad)", "a,b", "it's", 'say "hi"', "back\\slash\\", 'q\\"', "1e-4", "true", "null", "",
              "quick_funnel", "x=y", "$HOME", 1 / 3, 1e-05, 1e20, 0.1, -2.5, 7, True, False, None, [0.0, 1000.0],
              ["x y", 1, [2, "z"]], {"a": 1, "b": "c d"}]
    words = [shlex.split(select.override(f"+t{i}", v))[0] for i, v in enumerate(values)]
    composed = OmegaConf.to_container(compose_config(words))
    for i, value in enumerate(values):
        assert composed[f"t{i}"] == value and type(composed[f"t{i}"]) is type(value), (words[i], value)
    assert select.override("label", "quick_funnel") == "label=quick_funnel"  # plain words stay plain
    assert select.override("x", math.inf) == "x=inf"


def test_the_ignored_keys_cover_hydras_run_name_exclusions():
    """What Hydra leaves out of a run's directory name does not say what it trained: select ignores it too."""
    hydra = yaml.safe_load((CONFIG_DIR / "hydra" / "default.yaml").read_text())
    excluded = set(hydra["job"]["config"]["override_dirname"]["exclude_keys"]) - {"experiment", "name"}
    assert excluded <= set(select.IGNORED)


def test_two_sweeps_that_differ_in_an_unswept_key_are_refused(grid, fake_data, tmp_path, capsys):
    folder = copy(grid, tmp_path)
    longer = [o if not o.startswith("trainer.max_steps") else "trainer.max_steps=3" for o in base(fake_data)]
    point = [*POINTS[0][1:], "optimizer.lr=0.1"]
    train_run(folder, "longer", [*longer, *point, "seed=0"], "quick-00000002")
    err = error_of([folder], capsys)
    assert "differ in keys that were not swept: trainer.max_steps (2, 3)" in err
    assert f"several sweeps, {GRID} (8 runs), quick-00000002 (1 runs): pick one with --sweep ID" in err
    # the grid alone, picked by its id or by its record
    select.main([str(folder), "--sweep", GRID])
    assert len(rows(capsys.readouterr().out)) == 3
    (folder / "sweeps").mkdir()
    (folder / "sweeps" / f"{GRID}.yaml").write_text(yaml.safe_dump({"sweep": GRID, "swept": ["optimizer.lr"]}))
    select.main([str(folder / "sweeps" / f"{GRID}.yaml")])
    assert f"(sweep {GRID}): 8 runs, 3 points" in capsys.readouterr().out
    assert "no run of sweep quick-0000000f" in error_of([folder, "--sweep", "quick-0000000f"], capsys)
    # a second sweep that only adds a point, under the same other overrides, joins the first
    shutil.rmtree(folder / "longer")
    train_run(folder, "more,seed=0", [*base(fake_data), *point, "seed=0"], "quick-00000003")
    select.main([str(folder)])
    ranked = [float(cells(r)[3]) for r in rows(capsys.readouterr().out)]
    assert sorted(ranked) == sorted([0.01, 1 / 3, 1e6, 0.1]) and ranked[-1] == 1e6


def test_a_config_that_changed_under_the_same_overrides_is_refused(grid, fake_data, tmp_path, capsys):
    folder = copy(grid, tmp_path)
    train_run(folder, "p0,seed=5", [*base(fake_data), *POINTS[0], "seed=5"], GRID,
              unrecorded=["trainer.batch_size=50"])
    err = error_of([folder], capsys)
    assert "not swept: trainer.batch_size (100, 50); they were trained under different configs" in err


def older(folder: Path) -> Path:
    """The runs as an older runner left them: no launch record in summary.json."""
    for path in folder.glob("*/summary.json"):
        summary = json.loads(path.read_text())
        summary["config"].pop("launch")
        path.write_text(json.dumps(summary))
    return folder


def test_older_runs_are_compared_by_their_resolved_configs(grid, tmp_path, capsys):
    folder = older(copy(grid, tmp_path, "p0,seed=0", "p0,seed=1", "p1,seed=0", "p1,seed=1"))
    select.main([str(folder), "--print-overrides"])
    words = shlex.split(capsys.readouterr().out)
    assert sorted(w.split("=", 1)[0] for w in words) == SWEPT
    # a trainer setting that differs cannot be told from two experiments mixed
    shutil.copytree(folder / "p0,seed=0", folder / "short")
    summary = json.loads((folder / "short" / "summary.json").read_text())
    summary["config"]["trainer"]["max_steps"] = 1
    (folder / "short" / "summary.json").write_text(json.dumps(summary))
    err = error_of([folder], capsys)
    assert "differ in trainer.max_steps (1, 2), and they are older runs" in err
    # older and newer runs in one folder
    mixed = copy(grid, tmp_path / "mixed")
    older(copy(grid, tmp_path / "old", "p0,seed=0"))
    shutil.copytree(tmp_path / "old" / "quick" / "p0,seed=0", mixed / "old")
    assert "1 runs under" in error_of([mixed], capsys) and "have no launch record" in error_of([mixed], capsys)


@pytest.mark.parametrize("reduce", select.REDUCERS)
def test_a_misspelt_metric_is_named_whatever_the_reducer(grid, reduce, capsys):
    err = error_of([grid, "--metric", "val/curent/top1", "--reduce", reduce], capsys)
    assert "has the metric 'val/curent/top1'; the validation metrics they have: " in err
    assert "val/current/top1" in err and "test/" not in err


def test_no_finished_run_and_bad_input_say_so_in_one_line(grid, tmp_path, capsys):
    failed = copy(grid, tmp_path, "p2,seed=0", "p2,seed=1", "p1,seed=2")
    assert "no run under" in (err := error_of([failed], capsys)) and "finished: 2 diverged, 1 unfinished" in err
    assert "is not a folder of runs" in error_of([tmp_path / "nowhere"], capsys)
    (tmp_path / "record.yaml").write_text("command: x\n")
    assert "is not a sweep record: it has no 'sweep' key" in error_of([tmp_path / "record.yaml"], capsys)
    assert "invalid choice: 'final'" in error_of([grid, "--reduce", "final"], capsys)
    # as a command: exit code 1, one line, no traceback
    one = copy(grid, tmp_path / "one", "p0,seed=0")
    result = subprocess.run([sys.executable, "-m", "experiments.select", str(one), "--metric", "val/top1",
                             "--reduce", "mean"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and result.stderr.startswith("error: ") and result.stderr.count("\n") == 1


def test_a_sweep_of_the_runner_selected_from_its_record(fake_data, tmp_path):
    """End to end: `run.py -m` writes the runs' launch records and the sweep record; the printed overrides, composed
    with the sweep's other overrides, are the winner's config."""
    sweep_dir = tmp_path / "multirun"
    quiet = [o for o in base(fake_data) if o not in ("experiment=quick", "arm=quick_funnel")]
    result = run_cli(["-m", "experiment=quick", "arm=quick_funnel", "optimizer.gamma_p=1e-4,1e-2", "label='A (b)'",
                      *quiet, f"hydra.sweep.dir={sweep_dir}"])
    assert result.returncode == 0, result.stderr[-3000:]
    (record,) = (sweep_dir / "sweeps").glob("*.yaml")
    selection = select.select(record)
    assert selection["swept"] == ["optimizer.gamma_p"]  # arm, label: one value each, so not swept
    best = selection["points"][0]
    assert len(selection["points"]) == 2 and best.values["optimizer.gamma_p"] in (1e-4, 1e-2)
    printed = shlex.split(select.overrides_line(best))
    summary = json.loads((best.runs[0].path / "summary.json").read_text())
    others = [o for o in yaml.safe_load(record.read_text())["overrides"] if not o.startswith("optimizer.gamma_p=")]
    composed = OmegaConf.to_container(compose_config([*others, *printed]), resolve=True)
    composed.pop("launch"), summary["config"].pop("launch")
    assert composed == summary["config"]


def test_the_same_run_in_two_folders_counts_once(grid, fake_data, tmp_path):
    """The README's order: a grid at the default seed, then the grid at seed=0,1: the seed-0 runs repeat. Counted
    once and named; a repeat whose config differs is refused."""
    folder = copy(grid, tmp_path, "p0,seed=0", "p0,seed=1", "p1,seed=0", "p1,seed=1")
    shutil.copytree(folder / "p0,seed=0", folder / "p0 again")
    selection = select.select(folder)
    assert [len(p.runs) for p in selection["points"]] == [2, 2]
    assert len(selection["repeats"]) == 1 and selection["repeats"][0] in (folder / "p0 again", folder / "p0,seed=0")
    assert "repeat another run's config" in select.report(selection)
    summary = json.loads((folder / "p0 again" / "summary.json").read_text())
    summary["config"]["trainer"]["epochs"] += 1
    (folder / "p0 again" / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(select.SelectError, match="different configs"):
        select.select(folder)


def test_a_run_composed_without_the_runner_counts_as_unrecorded(fake_data, tmp_path):
    """The config always has launch; a run composed in-process (the protocol, a script) has it empty and must be
    read as one that recorded no overrides, not as a runner run that swept nothing."""
    from funnel.train.loop import train

    train(compose_config(base(fake_data)), tmp_path / "quick" / "run")
    (run,), _ = select.find_runs(tmp_path / "quick")
    assert run.launch is None
