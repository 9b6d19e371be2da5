#!/usr/bin/env bash
# Issue 35's CPU evidence: on-policy distillation (recipe opd_cpu_mix) against CoD RL on the same mixture. Runs in the
# output directory of scripts/mixture_evidence.sh, after it: seed N's student distils from that seed's single-domain
# arms (hidden_key_seedN, code_lock_seedN at step STEPS: same model, vocabulary and warm starts as the student) and is
# compared with its mix_seedN arm (CoD RL). Equal steps (STEPS) and equal generated lifecycles per step: 64 packs of
# G = 1 against the mixture's 8 packs of G = 8; the same evaluation suites and packs as every arm there.
# Usage: scripts/opd_evidence.sh [OUT_DIR (default outputs/mixture_evidence)] [extra overrides...]; SEEDS (default
# "1 2 3"), STEPS (default 120). Resumable (a checkpoint every 10 steps, checkpoint.load=auto); finished runs are
# skipped. One run at a time, e.g. under `nice -n 19`. Then scripts/mixture_evidence_summary.py OUT_DIR.
set -euo pipefail
OUT=${1:-outputs/mixture_evidence}
shift || true
PY=${PY:-.venv/bin/python}
STEPS=${STEPS:-120}
EXTRA=("$@")
source "$(dirname "$0")/mixture_suites.sh"
for seed in ${SEEDS:-1 2 3}; do
  name="opd_seed$seed"
  if [[ -f "$OUT/$name/eval/step_$STEPS.json" ]]; then echo "skip $name (done)"; continue; fi
  teachers=""
  for domain in hidden_key code_lock; do
    ckpt="$OUT/${domain}_seed$seed/checkpoints/step_$STEPS"
    if [[ ! -d "$ckpt" ]]; then
      echo "missing teacher $ckpt: run scripts/mixture_evidence.sh $OUT first" >&2
      exit 1
    fi
    teachers+="${teachers:+,}$domain=$ckpt"
  done
  [[ -d "$OUT/$name/checkpoints" ]] || rm -rf "${OUT:?}/$name"
  echo "== $name: distill.teachers=$teachers"
  /usr/bin/time -a -o "$OUT/$name.time" -f "$name wall %e s" "$PY" -m cod_megatron.train --recipe opd_cpu_mix \
    "run.output_dir=$OUT/$name" "run.seed=$seed" "run.steps=$STEPS" checkpoint.save_interval=10 \
    checkpoint.load=auto "distill.teachers=$teachers" rollout.packs_per_step=64 "$SUITES" "${EXTRA[@]}" \
    >> "$OUT/$name.log" 2>&1
  tail -n 1 "$OUT/$name.time"
done
