#!/usr/bin/env bash
# Issue 33's CPU evidence: the mixture recipe (HiddenKey + CodeLock, debug_cpu_mix) against each domain trained
# alone. The single-domain arms keep the mixture's model, vocabulary (env.vocabulary_domains), learning rate and warm
# starts and differ only in the domain list, with the same packs per domain and step (4: the mixture's 8 split 4 + 4);
# every arm is evaluated on the same suites of both domains (packs of 4 and 8, the Ralph loop, hints hidden).
# Usage: scripts/mixture_evidence.sh [OUT_DIR] [extra overrides...]; SEEDS (default "1 2 3"), ARMS (default
# "mix hidden_key code_lock"), STEPS (default 120). Resumable: a checkpoint every 10 steps, checkpoint.load=auto;
# finished runs are skipped. One run at a time, e.g. under `nice -n 19`. Then scripts/opd_evidence.sh OUT_DIR (issue
# 35) and .venv/bin/python scripts/mixture_evidence_summary.py OUT_DIR --out docs/mixture/mixture_evidence.
set -euo pipefail
OUT=${1:-outputs/mixture_evidence}
shift || true
PY=${PY:-.venv/bin/python}
STEPS=${STEPS:-120}
EXTRA=("$@")
source "$(dirname "$0")/mixture_suites.sh"
declare -A ARM=(
  [mix]="env.train_domains=hidden_key@1,code_lock@1 rollout.packs_per_step=8"
  [hidden_key]="env.train_domains=hidden_key rollout.packs_per_step=4"
  [code_lock]="env.train_domains=code_lock rollout.packs_per_step=4"
)
mkdir -p "$OUT"
for seed in ${SEEDS:-1 2 3}; do
  for arm in ${ARMS:-mix hidden_key code_lock}; do
    name="${arm}_seed$seed"
    if [[ -f "$OUT/$name/eval/step_$STEPS.json" ]]; then echo "skip $name (done)"; continue; fi
    [[ -d "$OUT/$name/checkpoints" ]] || rm -rf "${OUT:?}/$name"
    read -r -a ov <<< "${ARM[$arm]}"
    echo "== $name: ${ov[*]}"
    /usr/bin/time -a -o "$OUT/$name.time" -f "$name wall %e s" "$PY" -m cod_megatron.train --recipe debug_cpu_mix \
      "run.output_dir=$OUT/$name" "run.seed=$seed" "run.steps=$STEPS" checkpoint.save_interval=10 \
      checkpoint.load=auto env.vocabulary_domains=hidden_key,code_lock "$SUITES" "${ov[@]}" "${EXTRA[@]}" \
      >> "$OUT/$name.log" 2>&1
    tail -n 1 "$OUT/$name.time"
  done
done
