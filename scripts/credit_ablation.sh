#!/usr/bin/env bash
# The credit ablation of issue 19 on CodeLock (recipe debug_cpu_code_lock, docs/credit_domain.md): reward-to-go vs
# outcome vs own-episode credit, and update branches on vs off, same recipe, budget and evaluation for every run.
# Usage: scripts/credit_ablation.sh [OUT_DIR] [extra overrides...]; RUNS="name ..." picks runs (default: every
# variant of VARIANTS at every seed of SEEDS (default "1 2 3"), one seed of every variant first, so a partial run still
# compares them); then .venv/bin/python scripts/credit_ablation_summary.py OUT_DIR. Resumable: every run saves a
# checkpoint each 10 steps and starts with checkpoint.load=auto; finished runs are skipped.
set -euo pipefail
OUT=${1:-outputs/credit_ablation}
shift || true
PY=${PY:-.venv/bin/python}
RECIPE=${RECIPE:-debug_cpu_code_lock}
STEPS=${STEPS:-120}
EXTRA=("$@")
declare -A OVERRIDES=(
  [reward_to_go]="algorithm.credit=reward_to_go"
  [outcome]="algorithm.credit=outcome"
  [own]="algorithm.credit=own"
  [branches2]="algorithm.credit=reward_to_go algorithm.update_branches=2"
)
ORDER=()
for seed in ${SEEDS:-1 2 3}; do
  for v in ${VARIANTS:-reward_to_go outcome own branches2}; do ORDER+=("${v}_seed$seed"); done
done
read -r -a RUNS <<< "${RUNS:-${ORDER[*]}}"
mkdir -p "$OUT"
for name in "${RUNS[@]}"; do
  variant=${name%_seed*}; seed=${name##*_seed}
  if [[ -f "$OUT/$name/eval/step_$STEPS.json" ]]; then echo "skip $name (done)"; continue; fi
  [[ -d "$OUT/$name/checkpoints" ]] || rm -rf "${OUT:?}/$name"  # a stopped run resumes from its newest checkpoint
  read -r -a ov <<< "${OVERRIDES[$variant]}"
  echo "== $name: ${ov[*]} run.seed=$seed"
  /usr/bin/time -a -o "$OUT/$name.time" -f "$name wall %e s" "$PY" -m cod_megatron.train --recipe "$RECIPE" \
    "run.output_dir=$OUT/$name" "run.seed=$seed" "run.steps=$STEPS" checkpoint.save_interval=10 checkpoint.load=auto \
    "${ov[@]}" "${EXTRA[@]}" >> "$OUT/$name.log" 2>&1
  tail -n 1 "$OUT/$name.time"
done
