#!/usr/bin/env bash
# The CoD effect on HiddenKey and its controls, all on the debug_cpu recipe with the same budget and evaluation:
# reward-to-go credit for 3 seeds, the outcome and own-episode credit ablations and the hint-blind control.
# Usage: scripts/cod_effect.sh [OUT_DIR] [extra overrides...]; then scripts/summarize_runs.py OUT_DIR. Resumable: run it
# again after a stop (checkpoints every 10 steps, checkpoint.load=auto; finished runs are skipped).
# SEEDS="1234 1 2 3 4" runs reward-to-go at those seeds (default "1 2 3"); CONTROLS=0 skips the three seed-1 controls
# (docs/robustness.md: SEEDS="1234 1 2 3 4" CONTROLS=0 scripts/cod_effect.sh outputs/robust_5seeds).
set -euo pipefail
OUT=${1:-outputs/cod_effect}
shift || true
PY=${PY:-.venv/bin/python}
run() {  # name, overrides...; a stopped run resumes from its newest checkpoint (every 10 steps)
  local name=$1; shift
  if [[ -f "$OUT/$name/eval/step_120.json" ]]; then echo "skip $name (done)"; return; fi
  [[ -d "$OUT/$name/checkpoints" ]] || rm -rf "$OUT/$name"
  echo "== $name: $*"
  /usr/bin/time -a -o "$OUT/$name.time" -f "$name wall %e s" "$PY" -m cod_megatron.train --recipe debug_cpu \
    "run.output_dir=$OUT/$name" checkpoint.save_interval=10 checkpoint.load=auto "$@" "${EXTRA[@]}" >> "$OUT/$name.log" 2>&1
  tail -n 1 "$OUT/$name.time"
}
EXTRA=("$@")
mkdir -p "$OUT"
for seed in ${SEEDS:-1 2 3}; do run "reward_to_go_seed$seed" run.seed="$seed"; done
[[ ${CONTROLS:-1} == 1 ]] || exit 0
run outcome_seed1 run.seed=1 algorithm.credit=outcome
run own_seed1 run.seed=1 algorithm.credit=own
run hint_blind_seed1 run.seed=1 env.hint_visible=false
