#!/usr/bin/env bash
# One GPU, no network -> numbers. Run from anywhere; everything is relative to the repo root.
#
#   bash scripts/gpu_check.sh                 # on the GPU machine: every stage, <= BUDGET s (default 300) in all
#   STAGES="train_step kernels" bash scripts/gpu_check.sh   # re-run only some stages
#   bash scripts/gpu_check.sh --cpu           # every stage at tiny size on CPU (Triton interpreter): tests the script
#   bash scripts/gpu_check.sh --split-model   # here: split the packaged SmolLM2 GGUF into model_parts/ (2 x ~49 MiB)
#
# Steps (logic in scripts/gpu_check/*.py): setup (wheels), the stages versions, gpu_tests, train_step, kernels, then
# on the GPU model (the parts joined, the HF directory prepared) and real_model. Below the code's minimum Python /
# torch / transformers / megatron-core (cod_megatron/infra/min_versions.py) versions stops the run: the later steps
# are SKIPped. Each step has a cap ("the clock"
# below): the caps of a mode fit the default BUDGET, and real_model gets all that is left of it. One log per step;
# summary.txt (one line per step), train_step.csv and kernels.csv go to $OUT.
# The GPU machine's own python3 (torch, triton, transformers, pytest) is used, never `make setup` or .venv; what it
# lacks comes from wheels/ (`make gpu-check-wheels`), unzipped onto PYTHONPATH without pip. The model comes from
# model_parts/ (joined and checked against the sha256 recorded at split time) through $COD_MEGATRON_GGUF; while a
# part has not arrived yet (the first of two transfers) the model is PENDING and real_model is SKIPped.
#
# Environment: PY (python, default python3), OUT (default gpu_check_out), BUDGET (seconds, default 300), STAGES,
# WHEELS (default wheels), PARTS (default model_parts), WORK (scratch kept between runs, default .gpu_check_work),
# TIME_SCALE (multiplies every cap and BUDGET; tests of the script use 0.03; default 1).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 2
MODE=gpu
for arg in "$@"; do
  case $arg in
    --cpu) MODE=cpu ;;
    --split-model) MODE="split" ;;
    -h | --help) sed -n '2,22p' "$0"; exit 0 ;;
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

# ---- the clock ----------------------------------------------------------------------------------------------------
# A step's cap is a hard bound: SIGTERM KILL_S before it ($STAGE_TIMEOUT tells the command when), SIGKILL at it. The
# caps of a mode (the `stage NAME CAP` calls below) plus RESERVE_S (the shell between steps, the summary) fit the
# default BUDGET; tests/test_gpu_check.py reads them from here. A step gets min(its cap, what is left of BUDGET less
# RESERVE_S), SKIPped when that is under both its cap and MIN_S; real_model, the last, gets all that is left: its
# cap or more.
KILL_S=5
RESERVE_S=5
MIN_S=15
SCALE_PPM=$(awk -v s="${TIME_SCALE:-1}" 'BEGIN { if (!(s + 0 > 0)) exit 1; printf "%d", s * 1000000 + 0.5 }') ||
  { echo "TIME_SCALE=${TIME_SCALE:-} is not a positive number" >&2; exit 2; }
to_ms() { printf -v "$1" '%d' $(($2 * SCALE_PPM / 1000)); }         # to_ms VAR SECONDS: scaled milliseconds
to_s() { printf -v "$1" '%d.%03d' $(($2 / 1000)) $(($2 % 1000)); } # to_s VAR MILLISECONDS: "12.345" (timeout's unit)
now() { local us=${EPOCHREALTIME:-$SECONDS.000000}; NOW=$((10#${us//[!0-9]/} / 1000)); } # NOW: milliseconds
to_ms BUDGET_MS "$BUDGET"
to_ms RESERVE_MS "$RESERVE_S"
to_ms KILL_MS "$KILL_S"
to_ms MIN_MS "$MIN_S"

mkdir -p "$OUT"
: >"$OUT/summary.txt"
now
T0=$NOW
MODEL= # the model step's status: on the GPU real_model runs only after a PASS
STOP=  # set when versions finds the machine below the code's minimums: every later step is SKIPped with it
TOO_OLD=3 # versions.py's exit status for that

record() { # record STEP STATUS SECONDS TEXT
  printf '%-10s %-7s %4d s  %s\n' "$1" "$2" "$3" "$4" | tee -a "$OUT/summary.txt"
}

selected() { # setup always; model whenever real_model is
  [[ $1 == setup || " $STAGES " == *" $1 "* || ($1 == model && " $STAGES " == *" real_model "*) ]]
}

stage() { # stage NAME CAP_SECONDS cmd...: one summary line (PASS / FAIL / TIMEOUT / SKIP; the model step: PENDING)
  local name=$1 cap t left term kill start rc status result
  to_ms cap "$2"
  shift 2
  selected "$name" || return 0
  if [[ -n $STOP ]]; then
    record "$name" SKIP 0 "$STOP"
    return 0
  fi
  if [[ $name == real_model && $MODE == gpu && $MODEL != PASS ]]; then
    record "$name" SKIP 0 "the model is not ready (model ${MODEL:-not run})"
    return 0
  fi
  now
  left=$((BUDGET_MS - (NOW - T0) - RESERVE_MS))
  t=$cap
  if [[ $name == real_model ]] || ((left < t)); then t=$left; fi
  if ((t < cap && t < MIN_MS)); then # squeezed by the budget below MIN_S
    [[ $name == model ]] && MODEL=SKIP
    record "$name" SKIP 0 "budget of $BUDGET s spent"
    return 0
  fi
  to_s term $((t - KILL_MS))
  to_s kill "$KILL_MS"
  echo "=== [$(((NOW - T0) / 1000)) s] $name (cap $((t / 1000)) s, SIGTERM at $term s) -> $OUT/$name.log"
  start=$NOW
  STAGE_TIMEOUT=$term timeout -k "$kill" "$term" "$@" >"$OUT/$name.log" 2>&1
  rc=$?
  now
  if ((rc == 124 || rc == 137)); then
    status=TIMEOUT
  elif ((rc == 75)) && [[ $name == model ]]; then # model_parts.py: a part has not arrived yet
    status=PENDING
  elif ((rc != 0)); then
    status=FAIL
  else
    status=PASS
  fi
  [[ $name == model ]] && MODEL=$status
  [[ $name == versions && $rc == "$TOO_OLD" ]] && STOP="stopped: the machine is below the code's minimum versions (versions.log)"
  result=$(grep -E '^RESULT ' "$OUT/$name.log" | tail -n 1 | cut -c8-)
  [[ -n $result ]] || result=$(grep -E ' in [0-9.]+s' "$OUT/$name.log" | tail -n 1 | tr -d '=') # pytest's tally
  tail -n 12 "$OUT/$name.log"
  record "$name" "$status" $(((NOW - start + 500) / 1000)) "${result:-rc=$rc (see $name.log)}"
}

# ---- steps --------------------------------------------------------------------------------------------------------
echo "=== setup: wheels from $WHEELS, scratch in $WORK"
stage setup 10 "$PY" "$STAGE_DIR/wheels.py" "$WHEELS" "$WORK/site"
if [[ $MODE == cpu ]]; then
  stage versions 40 "$PY" "$STAGE_DIR/versions.py" # megatron.core alone imports in ~13 s of CPU here
  # the gpu-marked tests skip without CUDA; two fast interpreter kernel tests make the stage exercise pytest
  stage gpu_tests 60 "$PY" -m pytest -q -p no:cacheprovider tests/policy/test_gpu.py \
    tests/kernels/test_fused_linear_logprob.py::test_masked_rows_are_zero_and_get_no_gradient \
    tests/kernels/test_fused_linear_logprob.py::test_stable_at_large_logits_and_entropy_without_cancellation
  stage train_step 55 "$PY" "$STAGE_DIR/train_step.py" --csv "$OUT/train_step.csv"
  stage kernels 40 "$PY" "$STAGE_DIR/kernels.py" --csv "$OUT/kernels.csv"
  stage real_model 90 "$PY" "$STAGE_DIR/real_model.py" --cpu --out "$OUT/real_model_run"
else
  stage versions 25 "$PY" "$STAGE_DIR/versions.py" --expect-gpu
  # every gpu- and sglang-marked test (the sglang ones skip without COD_SGLANG_URL); only their files are collected,
  # since other test modules may import what this machine lacks. tests/test_gpu_check.py checks the selection.
  mapfile -t gpu_test_files < <(grep -rlE 'mark\.(gpu|sglang)' tests --include='test_*.py' | sort)
  stage gpu_tests 60 "$PY" -m pytest -q -p no:cacheprovider -m "gpu or sglang" "${gpu_test_files[@]}"
  stage train_step 40 "$PY" "$STAGE_DIR/train_step.py" --csv "$OUT/train_step.csv"
  stage kernels 35 "$PY" "$STAGE_DIR/kernels.py" --csv "$OUT/kernels.csv"
  stage model 40 "$PY" "$STAGE_DIR/model_parts.py" prepare "$PARTS" "$WORK/model"
  stage real_model 85 "$PY" "$STAGE_DIR/real_model.py" --out "$OUT/real_model_run"
fi

now
scale=$([[ ${TIME_SCALE:-1} == 1 ]] || echo ", time scale $TIME_SCALE")
echo "==== summary: $(((NOW - T0) / 1000)) s of $BUDGET s ($MODE$scale) -> $OUT/summary.txt"
echo "total      $(((NOW - T0) / 1000)) s of $BUDGET s, mode $MODE$scale, git $(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
  >>"$OUT/summary.txt"
cat "$OUT/summary.txt"
! grep -qE '^[a-z_]+ +(FAIL|TIMEOUT)' "$OUT/summary.txt"
