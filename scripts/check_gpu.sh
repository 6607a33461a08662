#!/usr/bin/env bash
# The GPU check (scripts/check_gpu.py): run it once on a machine with a CUDA GPU, <= 8 minutes; it writes
# results/bench/gpu.md. `--cpu` is the dry run on the CPU that CI runs. Arguments go to the Python script.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}"
exec "$PYTHON" -m scripts.check_gpu "$@"
