"""What `pip install` gives: the optimizers alone by default, the runner with its configs under [train], an entry
point that runs outside a checkout, and nothing installed under a top-level name that is not ours."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The project's wheel, built from a copy of what it is made of (the build leaves nothing in the checkout)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    shutil.copytree(ROOT / "funnel", src / "funnel", symlinks=True, ignore=ignore)
    shutil.copytree(ROOT / "configs", src / "configs", ignore=ignore)
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out),
                    str(src)], check=True, capture_output=True)
    return next(out.glob("*.whl"))


def test_the_wheel_ships_the_configs_and_only_the_funnel_package(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    configs = {n.removeprefix("funnel/configs/") for n in names if n.startswith("funnel/configs/")}
    on_disk = {str(p.relative_to(ROOT / "configs")) for p in (ROOT / "configs").rglob("*.yaml")}
    assert configs == on_disk
    top_level = {n.split("/", 1)[0] for n in names if not n.split("/", 1)[0].endswith(".dist-info")}
    assert top_level == {"funnel"}, "experiments/, scripts/ and tests/ run from a checkout; never installed"


def test_the_default_install_is_torch_only_and_extras_hold_the_rest(wheel):
    meta = zipfile.ZipFile(wheel).read(next(n for n in zipfile.ZipFile(wheel).namelist()
                                           if n.endswith(".dist-info/METADATA"))).decode()
    requires = [line.split(": ", 1)[1] for line in meta.splitlines() if line.startswith("Requires-Dist: ")]
    assert [r for r in requires if "extra ==" not in r] == ["torch>=2.4"]
    extras = {line.split(": ", 1)[1] for line in meta.splitlines() if line.startswith("Provides-Extra: ")}
    assert {"train", "demo", "optuna", "peers", "test"} <= extras
    assert any(r.startswith("hydra-core") and 'extra == "train"' in r for r in requires)
    assert any(r.startswith("mlxtend") and 'extra == "demo"' in r for r in requires)
    assert "Name: funnel-optim" in meta.splitlines()  # "funnel" and "experiments" are taken on the index


def test_funnel_optim_works_without_the_runner_packages():
    blocked = ["hydra", "omegaconf", "wandb", "timm", "torchvision", "matplotlib", "tqdm", "experiments"]
    code = (f"import sys; sys.modules.update({{m: None for m in {blocked!r}}})\n"
            "import torch\nfrom funnel.optim import Funnel, optimizer_stats\n"
            "w = torch.nn.Parameter(torch.ones(3)); opt = Funnel([w], lr=0.1, inner='adagrad')\n"
            "(w ** 2).sum().backward(); opt.step()\nprint(sorted(optimizer_stats(opt, [('w', w)])))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "scale/w" in result.stdout


def test_the_entry_point_trains_outside_a_checkout(wheel, fake_data, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target), "WANDB_SILENT": "true"}
    result = subprocess.run([str(target / "bin" / "funnel-run"), "experiment=quick", "arm=quick_funnel", "logger=none",
                             "trainer.max_steps=3", f"dataset.mnist_5k_path={fake_data}/mnist_5k.csv.gz"],
                            cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    run_dir = work / "runs" / "quick" / "arm=quick_funnel,trainer.max_steps=3"
    assert (run_dir / "summary.json").exists()
    # the installed copy ran, not the checkout
    found = subprocess.run([sys.executable, "-c", "import funnel.cli; print(funnel.cli.CONFIG_DIR)"], cwd=work,
                           env=env, capture_output=True, text=True).stdout.strip()
    assert found == str(target / "funnel" / "configs")
