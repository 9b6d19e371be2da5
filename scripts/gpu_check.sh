#!/usr/bin/env bash
# One GPU, no network -> numbers. Run from anywhere; everything is relative to the repo root.
#
#   bash scripts/gpu_check.sh                 # on the GPU machine: every stage, <= BUDGET s (default 300) in all
#   STAGES="train_step kernels" bash scripts/gpu_check.sh   # re-run only some stages
#   bash scripts/gpu_check.sh --cpu           # every stage at tiny size on CPU (Triton interpreter): tests the script
#   bash scripts/gpu_check.sh --split-model   # here: split the packaged SmolLM2 GGUF into model_parts/ (2 x ~49 MiB)
#
# Stages (logic in scripts/gpu_check/*.py): versions, gpu_tests, train_step, kernels, real_model. Each runs under
# its own timeout, capped by what is left of BUDGET; one log per stage, kernels.csv and summary.txt go to $OUT.
# The GPU machine's own python3 (torch, triton, transformers, pytest) is used, never `make setup` or .venv; what it
# lacks comes from wheels/ (`make gpu-check-wheels`), unzipped onto PYTHONPATH without pip. The model comes from
# model_parts/ (joined and checked against the sha256 recorded at split time) through $COD_MEGATRON_GGUF.
#
# Environment: PY (python, default python3), OUT (default gpu_check_out), BUDGET (seconds, default 300), STAGES,
# WHEELS (default wheels), PARTS (default model_parts), WORK (scratch kept between runs, default .gpu_check_work).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 2
MODE=gpu
for arg in "$@"; do
  case $arg in
    --cpu) MODE=cpu ;;
    --split-model) MODE="split" ;;
    -h | --help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "unknown argument: $arg (see --help)" >&2; exit 2 ;;
  esac
done

PY=${PY:-python3}
OUT=${OUT:-$ROOT/gpu_check_out}
BUDGET=${BUDGET:-300}
STAGES=${STAGES:-versions gpu_tests train_step kernels real_model}
WHEELS=${WHEELS:-$ROOT/wheels}
PARTS=${PARTS:-$ROOT/model_parts}
WORK=${WORK:-$ROOT/.gpu_check_work}
STAGE_DIR=$ROOT/scripts/gpu_check

# ---- environment: the package renames (kernels/ imports as cod_kernels, ...) as a shim of symlinks --------------
mkdir -p "$WORK/shim" "$WORK/site"
for pair in cod_kernels:kernels cod_envs:envs cod_recipes:recipes; do
  ln -sfn "$ROOT/${pair#*:}" "$WORK/shim/${pair%%:*}"
done
export PYTHONPATH="$WORK/shim:$ROOT:$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
export TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
export COD_MEGATRON_CACHE=${COD_MEGATRON_CACHE:-$WORK/cache}

if [[ $MODE == split ]]; then
  exec "$PY" "$STAGE_DIR/model_parts.py" split "$PARTS"
fi

if [[ $MODE == cpu ]]; then
  export CUDA_VISIBLE_DEVICES="" TRITON_INTERPRET=1
else
  unset TRITON_INTERPRET
  export TRITON_CACHE_DIR=$WORK/triton_cache  # no expandable_segments: CUDA IPC (pidfd_getfd) and the memory saver refuse it
fi

mkdir -p "$OUT"
: >"$OUT/summary.txt"
T0=$SECONDS

record() { # record STAGE STATUS SECONDS TEXT
  printf '%-10s %-7s %4d s  %s\n' "$1" "$2" "$3" "$4" | tee -a "$OUT/summary.txt"
}

stage() { # stage NAME CAP_SECONDS cmd...  (timeout: min(CAP, budget left); STAGE_TIMEOUT tells the command)
  local name=$1 cap=$2
  shift 2
  [[ " $STAGES " == *" $name "* ]] || return 0
  local left=$((BUDGET - (SECONDS - T0)))
  local t=$((left < cap ? left : cap))
  if ((t < 15)); then
    record "$name" SKIP 0 "budget of $BUDGET s spent"
    return 0
  fi
  echo "=== [$((SECONDS - T0)) s] $name (timeout $t s) -> $OUT/$name.log"
  local start=$SECONDS rc status result
  STAGE_TIMEOUT=$t timeout -k 10 "$t" "$@" >"$OUT/$name.log" 2>&1
  rc=$?
  if ((rc == 124 || rc == 137)); then status=TIMEOUT; elif ((rc != 0)); then status=FAIL; else status=PASS; fi
  result=$(grep -E '^RESULT ' "$OUT/$name.log" | tail -n 1 | cut -c8-)
  [[ -n $result ]] || result=$(grep -E ' in [0-9.]+s' "$OUT/$name.log" | tail -n 1 | tr -d '=') # pytest's tally
  tail -n 12 "$OUT/$name.log"
  record "$name" "$status" $((SECONDS - start)) "${result:-rc=$rc (see $name.log)}"
}

echo "=== setup: wheels from $WHEELS, scratch in $WORK"
"$PY" "$STAGE_DIR/wheels.py" "$WHEELS" "$WORK/site" | tee "$OUT/setup.log"
if [[ " $STAGES " == *" real_model "* && $MODE == gpu && -z ${COD_MEGATRON_GGUF:-} && -f $PARTS/MANIFEST.json ]]; then
  if gguf=$("$PY" "$STAGE_DIR/model_parts.py" join "$PARTS" "$WORK/model" 2>>"$OUT/setup.log"); then
    export COD_MEGATRON_GGUF=$gguf
    echo "model: $gguf (sha256 as recorded at split time)" | tee -a "$OUT/setup.log"
  else
    record model FAIL 0 "the parts in $PARTS do not reassemble (see setup.log)"
  fi
fi

# ---- stages -------------------------------------------------------------------------------------------------------
if [[ $MODE == cpu ]]; then
  stage versions 60 "$PY" "$STAGE_DIR/versions.py"
  # the gpu-marked tests skip without CUDA; two fast interpreter kernel tests make the stage exercise pytest
  stage gpu_tests 120 "$PY" -m pytest -q -p no:cacheprovider tests/policy/test_gpu.py \
    tests/kernels/test_fused_linear_logprob.py::test_masked_rows_are_zero_and_get_no_gradient \
    tests/kernels/test_fused_linear_logprob.py::test_stable_at_large_logits_and_entropy_without_cancellation
  stage train_step 120 "$PY" "$STAGE_DIR/train_step.py" --csv "$OUT/train_step.csv"
  stage kernels 60 "$PY" "$STAGE_DIR/kernels.py" --csv "$OUT/kernels.csv"
  stage real_model 120 "$PY" "$STAGE_DIR/real_model.py" --cpu --out "$OUT/real_model_run"
else
  stage versions 30 "$PY" "$STAGE_DIR/versions.py" --expect-gpu
  mapfile -t gpu_test_files < <(grep -rlE 'mark\.gpu' tests --include='test_*.py' | sort)
  stage gpu_tests 100 "$PY" -m pytest -q -p no:cacheprovider -m gpu "${gpu_test_files[@]}"
  stage train_step 50 "$PY" "$STAGE_DIR/train_step.py" --csv "$OUT/train_step.csv"
  stage kernels 50 "$PY" "$STAGE_DIR/kernels.py" --csv "$OUT/kernels.csv"
  stage real_model 150 "$PY" "$STAGE_DIR/real_model.py" --out "$OUT/real_model_run"
fi

echo "==== summary: $((SECONDS - T0)) s of $BUDGET s ($MODE) -> $OUT/summary.txt"
echo "total      $((SECONDS - T0)) s of $BUDGET s, mode $MODE, git $(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
  >>"$OUT/summary.txt"
cat "$OUT/summary.txt"
! grep -qE '^[a-z_]+ +(FAIL|TIMEOUT)' "$OUT/summary.txt"
