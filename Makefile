# cod-megatron front door. Everything runs inside .venv (Python 3.12), created and pinned by `make setup`.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
RECIPE ?= debug_cpu
ARGS ?=

.PHONY: setup lock test test-dist test-slurm goldens lint format train train-70b dry-run list-recipes bench \
	bench-kernels gpu-check-wheels gpu-check-model gpu-check-cpu clean

setup: $(VENV)/.installed  ## create .venv, install the exact pins of requirements/cpu.lock, then requirements/no-deps.txt

$(VENV)/.installed: requirements/cpu.lock requirements/no-deps.txt pyproject.toml
	@test -x $(PY) || "$$(scripts/find_python312.sh)" -m venv $(VENV)
	@test -x $(UV) || $(PY) -m pip install -q uv==0.13.8
	$(UV) pip sync -q --python $(PY) requirements/cpu.lock
	$(UV) pip install -q --python $(PY) --no-deps -r requirements/no-deps.txt
	$(UV) pip install -q --python $(PY) --no-deps --no-build-isolation -e .
	@touch $@

lock:  ## re-resolve requirements/cpu.in into requirements/cpu.lock
	$(UV) pip compile -q --python-version 3.12 requirements/cpu.in -o requirements/cpu.lock

test: setup  ## the CPU test suite (gpu-marked tests skip themselves without CUDA)
	$(PY) -m pytest -q

test-dist: setup  ## only the spawned-gloo tests
	$(PY) -m pytest -q -m dist

test-slurm: setup  ## the launcher on a real one-node Slurm started here (root; apt-installs slurm + munge if missing)
	$(PY) -m pytest -q tests/launch/test_slurm_e2e.py

goldens: setup  ## rewrite the rendered sbatch goldens (tests/launch/golden/*.sub); review the diff
	COD_UPDATE_GOLDEN=1 $(PY) -m pytest -q tests/launch -m "not slow"

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

train: setup  ## the embedded CPU default: the CoD loop on HiddenKey (debug_cpu); ARGS="key=value ..." overrides
	$(PY) -m cod_megatron.train --recipe $(RECIPE) $(ARGS)

train-70b: setup  ## 70B recipe through NeMo-Run's Slurm executor (Ray on Slurm); DRY_RUN=1 renders and prints the sbatch script
	$(PY) -m cod_megatron.launch --recipe llama3_70b_cod_64gpu_h100 --executor slurm $(if $(filter 1,$(DRY_RUN)),--dry-run) $(ARGS)

dry-run: setup  ## print the resolved config and parallel layout of RECIPE
	$(PY) -m cod_megatron.train --recipe $(RECIPE) --dry-run $(ARGS)

list-recipes: setup
	$(PY) -m cod_megatron.train --list-recipes

bench: setup  ## CPU benchmarks: episode packing, credit + packing throughput, environment steps/s (append CSVs)
	$(PY) -m cod_megatron.data.bench_packing --csv docs/benchmarks/cpu_packing.csv
	$(PY) -m cod_envs.bench --csv docs/benchmarks/cpu_envs.csv

bench-kernels: setup  ## GPU: fused LM-head loss vs eager / chunked / compile / Liger (table, CSV, PNG)
	$(PY) -m cod_kernels.bench_linear_pg_head --csv docs/benchmarks/kernels.csv --png docs/benchmarks/linear_pg_head.png
	$(PY) -m cod_kernels.bench_fused_linear_logprob --csv docs/benchmarks/kernels.csv --png docs/benchmarks/fused_linear_logprob.png

# ---- one lent GPU machine without network (README "Running on a single GPU") ------------------------------------
GPU_WHEELS := megatron-core==0.19.2 gguf==0.19.0 einops==0.8.2 liger-kernel==0.8.5  # einops: megatron imports it lazily; liger: the bench's baseline
TRANSFER_MIB := 64

gpu-check-wheels: setup  ## download the wheels the GPU machine lacks into wheels/ and check they fit one transfer
	rm -rf wheels && mkdir -p wheels
	$(PY) -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
		--platform manylinux_2_28_x86_64 -d wheels $(GPU_WHEELS)
	@repo=$$(git ls-files -z | du -cb --files0-from=- | tail -n 1 | cut -f1); \
	wheels=$$(du -cb wheels/*.whl | tail -n 1 | cut -f1); \
	part=$$(du -cb model_parts/*.part0 2>/dev/null | tail -n 1 | cut -f1); part=$${part:-0}; \
	total=$$((repo + wheels + part)); \
	echo "repo $$((repo >> 20)) MiB + wheels $$((wheels >> 20)) MiB + model part $$((part >> 20)) MiB = $$((total >> 20)) MiB (limit $(TRANSFER_MIB))"; \
	test $$total -le $$(($(TRANSFER_MIB) << 20)) || { echo "too large for one $(TRANSFER_MIB) MiB transfer"; exit 1; }

gpu-check-model: setup  ## split the packaged SmolLM2 GGUF into model_parts/ (2 parts + MANIFEST.json with sha256)
	PY=$(PY) bash scripts/gpu_check.sh --split-model

gpu-check-cpu: setup  ## every gpu_check stage at tiny size on CPU (tests the script; ~2 minutes, ~4 under load; at most BUDGET=300 s)
	PY=$(PY) bash scripts/gpu_check.sh --cpu

clean:
	rm -rf $(VENV) outputs .pytest_cache .ruff_cache
