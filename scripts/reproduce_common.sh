# Sourced by scripts/reproduce_*.sh. Environment knobs (the tests use them to run the same scripts on tiny data):
#   PY       python to use (default .venv/bin/python)        SEEDS    final seeds (default 0,1,2,3,4)
#   RUNS     run directories root (default multirun)         RESULTS  results root (default results)
#   EXTRA    overrides appended to every run                 BUDGET   trials per tuned method (default: the study's)
#   LAUNCH   start each run in its own process with this launcher, e.g. "torchrun --standalone --nproc_per_node=8"
#            (default: every run of a study in one Python process)
#   LOGGER   none (default) or wandb: every run also writes a W&B run, offline unless EXTRA=logger.mode=online
#            (upload later with `wandb sync <run dir>/wandb/offline-run-*`), grouped <study>/<method>/<tune|finals>
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PY:-.venv/bin/python}
SEEDS=${SEEDS:-0,1,2,3,4}
RUNS=${RUNS:-multirun}
RESULTS=${RESULTS:-results}
read -r -a EXTRA <<< "${EXTRA:-}"
LOGGER=${LOGGER:-none}

# study FILE ROOT [protocol options...]: the tuning protocol's runs of one study (experiments/protocol.py); a
# restarted study skips the runs that already ended
study() {
  "$PY" -m experiments.protocol "$1" --root "$2" --seeds "$SEEDS" ${BUDGET:+--budget "$BUDGET"} \
    ${LAUNCH:+--launch "$LAUNCH"} --logger "$LOGGER" "${@:3}" --extra "${EXTRA[@]}"
}
