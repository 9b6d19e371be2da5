#!/usr/bin/env bash
# Issue 30 item 3, pre-registered in docs/preregistration/2026-12-07_smollm2_cod_effect.md: the real pre-trained
# model (recipe smollm2_135m_cod_cpu) for 60 CoD steps at three seeds, held-out evaluation on 64 fresh packs of 4 at
# steps 0, 30 and 60 with hints shown and hidden. Then: .venv/bin/python scripts/real_model_seeds_summary.py OUT_DIR.
# Usage: scripts/smollm2_seeds.sh [OUT_DIR] [extra overrides...]; SEEDS (default "1 2 3"). Resumable: a checkpoint
# every 10 steps, checkpoint.load=auto; a finished run is skipped and keeps only its last checkpoint (2.2 GB each).
# One run at a time, e.g. under `nice -n 19`.
set -euo pipefail
OUT=${1:-outputs/smollm2_seeds}
shift || true
PY=${PY:-.venv/bin/python}
STEPS=60
EXTRA=("$@")
mkdir -p "$OUT"
for seed in ${SEEDS:-1 2 3}; do
  name="seed$seed"
  if [[ -f "$OUT/$name/eval/step_$STEPS.json" ]]; then echo "skip $name (done)"; continue; fi
  [[ -d "$OUT/$name/checkpoints" ]] || rm -rf "${OUT:?}/$name"  # a stopped run resumes from its newest checkpoint
  echo "== $name"
  /usr/bin/time -a -o "$OUT/$name.time" -f "$name wall %e s" "$PY" -m cod_megatron.train \
    --recipe smollm2_135m_cod_cpu "run.output_dir=$OUT/$name" "run.seed=$seed" "run.steps=$STEPS" \
    eval.interval=30 eval.packs=64 "eval.pack_sizes=[4]" eval.data_seed=20261208 \
    checkpoint.save_interval=10 checkpoint.load=auto "${EXTRA[@]}" >> "$OUT/$name.log" 2>&1
  tail -n 1 "$OUT/$name.time"
  find "$OUT/$name/checkpoints" -mindepth 1 -maxdepth 1 -name 'step_*' ! -name "step_$STEPS" -exec rm -rf {} +
done
