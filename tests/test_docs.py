"""The README is what a new user runs: its commands and tables must match the code."""
from __future__ import annotations

import re
from pathlib import Path

from funnel.optim import REGISTRY

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_ci_runs_the_readme_test_command():
    command = re.search(r"## Run the tests.*?```bash\n(.+?)\n```", README, re.S).group(1).strip()
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert command in ci_lines


def test_readme_lists_every_registered_optimizer():
    missing = [name for name in REGISTRY if f"`{name}`" not in README]
    assert not missing, f"README's optimizer table lacks {missing}"
