"""The reports on real run directories (tiny runs trained by the fixtures in conftest.py): each refuses runs that are
not its artefact's in one line, reports the hardware the runs recorded, names the run a figure draws, says what is
true of one seed, and saves readable figures in three formats labelled by the methods' labels."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml
from PIL import Image

from experiments import claims, fig3_rotated_mnist, fig4_scales_gains, peers, plot_runs, stats
from experiments.checks import WrongRuns, check
from experiments.plots import plt
from experiments.provenance import markdown, provenance
from experiments.runs import find_runs
from experiments.table1_cpu import TABLE1_CPU
from experiments.table1_mobilenet import TABLE1
from experiments.table2_resnet50 import TABLE2
from funnel.train.records import cpu_name
from tests.helpers import CONFIG_DIR, ROOT

SVG = "{http://www.w3.org/2000/svg}"


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def arm_label(arm: str) -> str:
    return yaml.safe_load((CONFIG_DIR / "arm" / f"{arm}.yaml").read_text())["label"]


# ------------------------------------------------------------------------------------------ the artefact check
def test_table1_cpu_refuses_rotated_mnist_runs_in_one_line(rotated_study, tmp_path):
    base = summary(rotated_study / "adagrad" / "finals" / "seed=0")["config"]["dataset"]["base"]
    result = subprocess.run([sys.executable, "-m", "experiments.table1_cpu", str(rotated_study), "--out",
                             str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: table1_cpu draws experiment table1_fashion (dataset fashion_mnist, model SmallCNN)")
    assert f"found experiment rotated_mnist (dataset rotated_{base}, model LogisticRegression) in 2 of 2 runs" in line
    assert line.endswith("give it a study root of configs/tuning/table1_cpu.yaml")
    assert not (tmp_path / "out" / "table.md").exists()  # nothing written: no all-"–" table
    for artefact, wanted in ((TABLE1, "mobilenet_cifar10"), (TABLE2, "resnet50_imagenet")):
        with pytest.raises(WrongRuns, match=f"draws experiment {wanted} .* but found experiment rotated_mnist"):
            artefact.build(rotated_study, tmp_path / "out")


def test_peers_refuses_a_workload_that_is_not_a_peers_experiment(rotated_study, tmp_path):
    (tmp_path / "peers").mkdir()
    (tmp_path / "peers" / "rotated").symlink_to(rotated_study)
    with pytest.raises(SystemExit, match=r"^error: peers draws experiment peers_cnn_fashion or .* but found "
                                         r"experiment rotated_mnist"):
        peers.main([str(tmp_path / "peers"), "--out", str(tmp_path / "out")])


def test_a_run_still_training_is_not_judged(rotated_study, tmp_path):
    """No summary yet: no config to judge it by (its checkpoint's is not read here), so the check leaves it out."""
    shutil.copytree(rotated_study / "adagrad" / "finals" / "seed=0", tmp_path / "running")
    (tmp_path / "running" / "summary.json").unlink()
    running = find_runs(tmp_path / "running")
    check(running, TABLE1_CPU.expect)
    finished = find_runs(rotated_study / "funnel")
    with pytest.raises(WrongRuns, match="in 1 of 1 runs"):
        check(running + finished, TABLE1_CPU.expect)


def test_plot_runs_refuses_runs_of_two_experiments(quick_sweep, rotated_study, tmp_path):
    mixed = tmp_path / "mixed"
    shutil.copytree(quick_sweep, mixed)
    shutil.copytree(rotated_study / "adagrad" / "finals" / "seed=0", mixed / "other")
    with pytest.raises(SystemExit, match=r"^error: plot_runs draws the runs of one experiment, but found experiment "
                                         r"quick .* in 2 of 3 runs; experiment rotated_mnist .* in 1 of 3 runs"):
        plot_runs.main([str(mixed)])


# ------------------------------------------------------------------------------------------ provenance
def test_provenance_reports_the_hardware_each_run_recorded_not_this_machine(rotated_study, tmp_path):
    dirs = [rotated_study / m / "finals" / "seed=0" for m in ("adagrad", "funnel")]
    recorded = [summary(d)["hardware"] for d in dirs]
    machines = provenance(find_runs(rotated_study))["hardware"]["machines"]
    assert [{k: v for k, v in m.items() if k != "runs"} for m in machines] == [recorded[0]] == [recorded[1]]
    assert machines[0]["runs"] == 2
    # as if the runs had trained elsewhere: one on a GPU node, one before summaries recorded the hardware
    copy = tmp_path / "study"
    shutil.copytree(rotated_study, copy)
    elsewhere = {**recorded[0], "cpu": "Recorded CPU", "cores": 64, "gpus": ["NVIDIA H100"] * 2, "host": "node-7"}
    for name, edit in (("adagrad", lambda s: {**s, "hardware": elsewhere}),
                       ("funnel", lambda s: {k: v for k, v in s.items() if k != "hardware"})):
        path = copy / name / "finals" / "seed=0" / "summary.json"
        path.write_text(json.dumps(edit(json.loads(path.read_text()))))
    p = provenance(find_runs(copy))
    assert p["hardware"]["machines"] == [{**elsewhere, "runs": 1}] and p["hardware"]["not_recorded"] == 1
    text = markdown(p)
    assert "Recorded CPU (64 cores), 2 × NVIDIA H100, host node-7" in text
    assert "not recorded: 1 runs" in text and cpu_name() not in text


# ------------------------------------------------------------------------------------------ naming the run drawn
def test_figure4_names_the_run_it_draws(rotated_study, tmp_path):
    final = rotated_study / "funnel" / "finals" / "seed=0"
    config = summary(final)["config"]
    named = f"funnel/finals/seed=0 ({config['label']}, seed {config['seed']})"
    out = tmp_path / "figure4.png"
    fig4_scales_gains.main([str(rotated_study), "--out", str(out)])
    assert named in out.with_suffix(".md").read_text()
    fig = fig4_scales_gains.draw(fig4_scales_gains.funnel_runs(rotated_study))
    assert named in fig._suptitle.get_text().replace("\n", " ")
    plt.close(fig)
    with pytest.raises(SystemExit, match="error: fig4_scales_gains draws Funnel runs .* adagrad/finals/seed=0 is "
                                         "torch.optim.Adagrad"):
        fig4_scales_gains.main([str(rotated_study), "--out", str(out), "--method", "adagrad"])


@pytest.fixture(scope="module")
def figure3(rotated_study, tmp_path_factory):
    out = tmp_path_factory.mktemp("fig3")
    fig3_rotated_mnist.build(rotated_study, out)
    return out


def test_figure3_names_the_run_of_its_gains_panel(figure3):
    assert "(c) one run: funnel/finals/seed=0 (Funnel (AdaGrad), seed 0)." in (figure3 / "table.md").read_text()


# ------------------------------------------------------------------------------------------ one seed
def test_one_seed_is_reported_as_having_no_spread(figure3):
    text = (figure3 / "table.md").read_text()
    assert "mean ± std" not in text and "± nan" not in text and "no detectable difference" not in text
    assert "at one seed (one seed: no spread" in text and "(one seed: no spread, no verdict)" in text
    assert "- Funnel (AdaGrad): fewer than two paired seeds: no spread, so no verdict against AdaGrad." in text
    one = stats.paired({0: 80.0}, {0: 79.0})
    assert stats.verdict(one, "higher", "lower") == stats.ONE_SEED
    assert claims.verdict_from([stats.ONE_SEED, stats.ONE_SEED], "higher", "lower") == claims.NOT_TESTED


# ------------------------------------------------------------------------------------------ figures
def svg_texts(path: Path) -> list[tuple[list[str], float, str]]:
    """(enclosing group ids, font size in points, text) of every text in an SVG that matplotlib wrote."""
    out = []

    def walk(element, groups):
        if element.tag == f"{SVG}text":
            size = float(element.get("style").split("font-size:")[1].split("px")[0])  # 72 px per inch: points
            out.append((groups, size, "".join(element.itertext()).strip()))
        for child in element:
            walk(child, groups + [element.get("id") or ""])
    walk(ET.parse(path).getroot(), [])
    return out


def assert_saved_and_readable(png: Path) -> list[str]:
    """PNG (>= 150 dpi), PDF and SVG beside each other; every text >= 8 pt, axis labels >= 9 pt. The legend texts."""
    with Image.open(png) as image:
        assert image.info["dpi"][0] >= 150
    assert png.with_suffix(".pdf").read_bytes().startswith(b"%PDF")
    texts = svg_texts(png.with_suffix(".svg"))
    assert texts and min(size for _, size, _ in texts) >= 8
    ticks = [size for groups, size, _ in texts if any(g.startswith(("xtick_", "ytick_")) for g in groups)]
    labels = [size for groups, size, _ in texts if groups[-2].startswith("matplotlib.axis_")]  # not in a tick
    assert ticks and labels and min(ticks) >= 8 and min(labels) >= 9
    return [text for groups, _, text in texts if any(g.startswith("legend_") for g in groups)]


def test_figures_are_saved_in_three_formats_with_readable_fonts(figure3, rotated_study, tmp_path):
    legend = assert_saved_and_readable(figure3 / "figure3.png")
    assert "AdaGrad (n=1)" in legend and "Funnel (AdaGrad) (n=1)" in legend
    fig4_scales_gains.main([str(rotated_study), "--out", str(tmp_path / "figure4.png")])
    assert_saved_and_readable(tmp_path / "figure4.png")


def test_demo_plot_labels_curves_by_label_and_keeps_phase_names_off_the_curves(quick_sweep):
    out = plot_runs.plot(quick_sweep)
    legend = assert_saved_and_readable(out)
    assert legend[:2] == [arm_label(a) for a in ("quick_adagrad", "quick_funnel")]  # not arm=quick_adagrad
    fig = plot_runs.draw(find_runs(quick_sweep))
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == legend[:2]
    phases = [summary(quick_sweep / "arm=quick_adagrad")["phases"][k]["name"] for k in range(3)]
    names = [t for t in ax.texts if t.get_text() in phases]
    assert [t.get_text() for t in names] == phases
    boxes = [t.get_window_extent(renderer) for t in names]
    title = ax.title.get_window_extent(renderer)
    for k, box in enumerate(boxes):
        # above the axes, where no curve is drawn (lines are clipped to the axes), and below the title
        assert box.y0 >= ax.bbox.y1 and box.y1 <= title.y0
        assert not any(box.overlaps(other) for other in boxes[k + 1:])
    plt.close(fig)


def test_peers_profiles_show_a_line_at_zero_and_name_methods_by_label(tmp_path):
    """Funnel reaches no target on either workload: its profile is 0 everywhere, a line the x-axis must not hide."""
    def method(label, steps):
        return {"label": label, **{column: {"steps": dict(enumerate(steps))} for column in peers.COLUMNS}}

    inf = float("inf")
    summary_ = {"rotated": {"baseline": "adagrad", "methods": {
                    "adagrad": method("AdaGrad", [40, 40]), "funnel": method("Funnel (AdaGrad)", [inf, inf]),
                    "mechanic_adagrad": method("Mechanic (AdaGrad)", [10, 10])}},
                "cnn": {"baseline": "momentum", "methods": {
                    "momentum": method("Momentum", [30, 30]), "funnel": method("Funneled Momentum", [inf, inf]),
                    "mechanic_sgd": method("Mechanic (momentum)", [60, 60])}}}
    fig = peers.profile_figure(summary_)
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["baseline: AdaGrad / Momentum", "Funnel (AdaGrad) / Funneled Momentum",
                      "Mechanic (AdaGrad) / Mechanic (momentum)"]
    fig.canvas.draw()
    for ax in fig.axes:
        (line,) = [line for line in ax.get_lines() if line.get_label() == legend[1]]
        assert set(line.get_ydata()) == {0.0}
        y = ax.transData.transform((2.0, 0.0))[1]
        half_line = line.get_linewidth() * fig.dpi / 72 / 2
        spine = ax.spines["bottom"].get_linewidth() * fig.dpi / 72 / 2
        # clear of the x-axis by whole pixels and by a visible gap (5% of the axes' height)
        assert y - ax.bbox.y0 > max(half_line + spine + 2, 0.05 * ax.bbox.height)
    plt.close(fig)
    out = peers.plot_profiles(summary_, tmp_path / "profiles.png")
    assert assert_saved_and_readable(out) == legend


def test_a_table_given_a_folder_that_is_no_study_says_so_in_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "experiments.table1_cpu", str(tmp_path), "--out",
                             str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip() == (f"error: {tmp_path}/protocol.json is missing: run python -m experiments.protocol "
                                     f"... --root {tmp_path} first")
