"""The README is what a new user runs: its commands and tables must match the code."""
from __future__ import annotations

import os
import re
from pathlib import Path

from funnel.optim import REGISTRY

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def fresh_machine_commands() -> list[str]:
    section = README.split("## On a fresh machine", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```bash\n(.+?)\n```", section, re.S)]


def test_readme_gives_exactly_two_fresh_machine_commands_and_ci_runs_the_test_one():
    demo, tests = fresh_machine_commands()
    assert demo == "bash scripts/demo.sh" and "pytest" in tests
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert tests in ci_lines


def test_readme_lists_every_registered_optimizer():
    missing = [name for name in REGISTRY if f"`{name}`" not in README]
    assert not missing, f"README's optimizer table lacks {missing}"


# Every command in README.md's bash blocks is either run below with small settings, in the order a reader meets
# them, or named here with the test (or CI script) that runs it. A command added to the README with neither fails
# `test_every_readme_command_is_run_somewhere`.
RUN_ELSEWHERE = {
    'bash scripts/setup.sh && .venv/bin/python -m pytest -m "not slow"': ".ci/run",
    # pip itself is not run: the wheel's metadata is checked (.ci/run installs the test extra, which holds these)
    "pip install 'funnel-optim[train,demo]'":
        "tests/test_packaging.py::test_the_default_install_is_torch_only_and_extras_hold_the_rest",
    "pip install -e '.[optuna]'":
        "tests/test_packaging.py::test_the_default_install_is_torch_only_and_extras_hold_the_rest",
    # run.py under torchrun, 2 gloo ranks on the CPU (no GPUs, no second node here)
    "torchrun --standalone --nproc_per_node=8 run.py experiment=mobilenet_cifar10 arm=cifar_funnel":
        "tests/train/test_processes.py::test_two_ddp_processes_match_one",
    "torchrun --nnodes=4 --nproc_per_node=8 --rdzv_backend=c10d --rdzv_endpoint=$HEAD_NODE:29500 "
    "--rdzv_id=$JOB_ID run.py experiment=resnet50_imagenet arm=imagenet_funnel":
        "tests/train/test_processes.py::test_two_ddp_processes_match_one",
    "python run.py -m hydra/launcher=slurm hydra.launcher.nodes=4 hydra.launcher.partition=gpu "
    "experiment=resnet50_imagenet": "tests/test_docs.py::test_the_slurm_command_composes",
    'python -m experiments.protocol configs/tuning/table1_mobilenet.yaml --root multirun/mobilenet_cifar10 '
    '--launch "torchrun --standalone --nproc_per_node=8"':
        "tests/experiments/test_pipelines.py::test_mobilenet_cifar10_table1_and_figure4 (slow)",
    "python -m experiments.table1_mobilenet multirun/mobilenet_cifar10 --out results/mobilenet_cifar10":
        "tests/experiments/test_pipelines.py::test_mobilenet_cifar10_table1_and_figure4 (slow)",
    "python -m scripts.bench_optim": "tests/optim/test_bench.py::test_every_candidate_steps_and_reports_its_state",
    "python -m scripts.bench_train": "tests/optim/test_bench.py::test_the_quick_benchmarks_run_as_the_readme_gives_them"
                                     " (slow)",
    "python -m scripts.bench_optim --quick && python -m scripts.bench_train --quick":
        "tests/optim/test_bench.py::test_the_quick_benchmarks_run_as_the_readme_gives_them (slow)",
    "bash scripts/check_gpu.sh": "tests/test_check_gpu.py::test_the_cpu_dry_run_runs_every_check",
    "bash scripts/check_gpu.sh --cpu": "tests/test_check_gpu.py::test_the_cpu_dry_run_runs_every_check",
}
RUN_HERE = ("python run.py ", "funnel-run ", "python -m experiments.select ", "bash scripts/demo.sh")


def readme_commands() -> list[str]:
    """The commands of every bash block, continuation lines joined, comments dropped."""
    commands = []
    for block in re.findall(r"```bash\n(.+?)\n```", README, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            command = re.sub(r"(^|\s+)#.*$", "", line).strip()
            if command:
                commands.append(re.sub(r"\s+", " ", command))
    return commands


def test_every_readme_command_is_run_somewhere():
    for command in readme_commands():
        if command.startswith(RUN_HERE):
            continue
        assert command in RUN_ELSEWHERE, f"README command not run by any test: {command}"
    for where in RUN_ELSEWHERE.values():
        if where == ".ci/run":
            continue
        path, name = where.split(" ")[0].split("::")
        assert f"def {name}(" in (ROOT / path).read_text(), f"{where} does not exist"


def test_the_slurm_command_composes():
    from tests.helpers import compose_config

    command = next(c for c in readme_commands() if "hydra/launcher=slurm" in c)
    cfg = compose_config([a for a in command.split()[2:] if a != "-m"], hydra=True)
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher")
    assert cfg.hydra.launcher.nodes == 4 and cfg.hydra.launcher.partition == "gpu"


def small(command: list[str], fake_data: Path) -> list[str]:
    """The command with small settings: a few steps of tiny data, no W&B, two Optuna trials."""
    from tests.helpers import tiny

    experiment = next(a.split("=", 1)[1] for a in command if a.startswith("experiment="))
    settings = [*tiny(experiment, fake_data), "logger=none"]
    if any(a.startswith("hparams_search=") for a in command):
        settings.append("hydra.sweeper.n_trials=2")
    keys = {s.split("=", 1)[0] for s in settings}
    return [a for a in command if a.split("=", 1)[0] not in keys] + settings


def test_the_runner_commands_work_as_written(fake_data, tmp_path):
    """The runner, select, Optuna and demo commands, in the README's order, in a fresh directory."""
    import shlex
    import subprocess
    import sys

    bin_dir = Path(sys.executable).parent
    demo = [line.replace(".venv/bin/python", "python") for line in
            (ROOT / "scripts" / "demo.sh").read_text().splitlines() if line.startswith(".venv/bin/python")]
    commands = [c for c in readme_commands() if c.startswith(RUN_HERE) and c not in RUN_ELSEWHERE]
    at = commands.index("bash scripts/demo.sh")
    commands[at:at + 1] = demo  # the demo's own commands, where it stands
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FUNNEL_DATA": str(fake_data), "WANDB_SILENT": "true"}
    for command in commands:
        args = shlex.split(command)
        if args[0] == "python":
            args[0] = sys.executable
        if args[0] == "funnel-run":
            args[0] = str(bin_dir / "funnel-run")
        if "run.py" in args:
            args[args.index("run.py")] = str(ROOT / "run.py")
        if any(a.startswith("experiment=") for a in args):
            args = small(args, fake_data)
        result = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, f"{command}\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
