#!/usr/bin/env bash
# The CPU teachers of recipe opd_cpu_mix (issue 35): one CoD run per word domain on debug_cpu_mix's model with the
# mixture's vocabulary (env.vocabulary_domains=hidden_key,code_lock), each domain alone, 120 steps; the recipe reads
# OUT/<domain>/checkpoints/step_120. Usage: scripts/opd_teachers.sh [OUT_DIR (default runs/opd_teachers)]
# [extra overrides...]. Resumable (a checkpoint every 10 steps); ~15 min on 2 cores. Then: make train RECIPE=opd_cpu_mix
set -euo pipefail
OUT=${1:-runs/opd_teachers}
shift || true
PY=${PY:-.venv/bin/python}
for domain in hidden_key code_lock; do
  if [[ -d "$OUT/$domain/checkpoints/step_120" ]]; then echo "skip $domain (done)"; continue; fi
  echo "== teacher of $domain"
  "$PY" -m cod_megatron.train --recipe debug_cpu_mix "run.output_dir=$OUT/$domain" "env.train_domains=$domain" \
    env.vocabulary_domains=hidden_key,code_lock run.steps=120 checkpoint.save_interval=10 \
    checkpoint.load=auto "$@"
done
