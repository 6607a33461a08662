# Sourced by scripts/reproduce_*.sh. Environment knobs (the tests use them to run the same scripts on tiny data):
#   PY       python to use (default .venv/bin/python)        SEEDS    final seeds (default 0,1,2,3,4)
#   RUNS     run directories root (default multirun)         RESULTS  results root (default results)
#   EXTRA    overrides appended to every run                 LAUNCH   launcher prefix, e.g. "torchrun --nproc_per_node=8"
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PY:-.venv/bin/python}
SEEDS=${SEEDS:-0,1,2,3,4}
RUNS=${RUNS:-multirun}
RESULTS=${RESULTS:-results}
read -r -a EXTRA <<< "${EXTRA:-}"
read -r -a LAUNCH <<< "${LAUNCH:-$PY}"
COMMON=(logger=none trainer.progress_bar=false)

# train ARGS...: one Hydra multirun with the common and extra overrides
train() { "${LAUNCH[@]}" run.py -m "$@" "${COMMON[@]}" "${EXTRA[@]}"; }

# choose SWEEP_DIR METRIC REDUCE OUT: record the best point of a sweep (OUT.json, OUT.md) and print its overrides
choose() { "$PY" -m experiments.select "$1" --metric "$2" --reduce "$3" --out "$4" --print-overrides; }

# report MODULE DIR OUT: the artefact's table from DIR/finals, naming every sweep and final run under DIR in its
# provenance
report() {
  local sweeps=() d
  for d in "$2"/sweep_* "$2"/finals/*; do sweeps+=(--sweep "$d"); done
  "$PY" -m "experiments.$1" "$2/finals" --out "$3" "${sweeps[@]}"
}
