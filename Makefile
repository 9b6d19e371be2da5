# cod-megatron front door. Everything runs inside .venv (Python 3.12), created and pinned by `make setup`.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
RECIPE ?= debug_cpu
ARGS ?=

.PHONY: setup lock test test-dist lint format train dry-run list-recipes bench clean

setup: $(VENV)/.installed  ## create .venv and install the exact pins of requirements/cpu.lock (idempotent)

$(VENV)/.installed: requirements/cpu.lock pyproject.toml
	@test -x $(PY) || "$$(scripts/find_python312.sh)" -m venv $(VENV)
	@test -x $(UV) || $(PY) -m pip install -q uv==0.13.8
	$(UV) pip sync -q --python $(PY) requirements/cpu.lock
	$(UV) pip install -q --python $(PY) --no-deps --no-build-isolation -e .
	@touch $@

lock:  ## re-resolve requirements/cpu.in into requirements/cpu.lock
	$(UV) pip compile -q --python-version 3.12 requirements/cpu.in -o requirements/cpu.lock

test: setup  ## the CPU test suite (gpu-marked tests skip themselves without CUDA)
	$(PY) -m pytest -q

test-dist: setup  ## only the spawned-gloo tests
	$(PY) -m pytest -q -m dist

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

train: setup  ## the embedded CPU default recipe
	$(PY) -m cod_megatron.train --recipe $(RECIPE) $(ARGS)

dry-run: setup  ## print the resolved config and parallel layout of RECIPE
	$(PY) -m cod_megatron.train --recipe $(RECIPE) --dry-run $(ARGS)

list-recipes: setup
	$(PY) -m cod_megatron.train --list-recipes

bench: setup  ## CPU benchmarks: episode packing, credit + packing throughput, environment steps/s (append CSVs)
	$(PY) -m cod_megatron.data.bench_packing --csv docs/benchmarks/cpu_packing.csv
	$(PY) -m cod_envs.bench --csv docs/benchmarks/cpu_envs.csv

clean:
	rm -rf $(VENV) outputs .pytest_cache .ruff_cache
