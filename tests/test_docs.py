"""The README is what a new user runs: its commands and tables must match the code."""
from __future__ import annotations

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
