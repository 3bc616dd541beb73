# `make demo` and `make test` work on a fresh machine: each first builds the environment it needs
# (.venv, and .venv-verl for the verl tests) from the pinned versions in constraints/.
PYTHON ?= python3
VENV ?= .venv
VERL_VENV ?= .venv-verl
PY := $(VENV)/bin/python
export SEARCH_ENVS_DATA ?= $(abspath ../shared/data)
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
export OMP_NUM_THREADS ?= 1

.PHONY: install demo test test-main test-verl lock

$(VENV)/.stamp: pyproject.toml constraints/main.txt .ci/env
	.ci/env main $(VENV) $(PYTHON)
	touch $@

$(VERL_VENV)/.stamp: pyproject.toml constraints/verl.txt .ci/env
	.ci/env verl $(VERL_VENV) $(PYTHON)
	touch $@

install: $(VENV)/.stamp

# A tiny model learns to search SynthWorld from scratch, then a table of policies on held-out questions.
demo: $(VENV)/.stamp
	$(PY) benchmarks/tiny_search.py --out bench_out/demo

# The whole suite, then the verl integration's tests in their own environment (verl pins
# transformers<5.11, README "verl"). CI runs exactly this (.ci/run).
test: test-main test-verl

test-main: $(VENV)/.stamp
	$(PY) -m pytest -q

test-verl: $(VERL_VENV)/.stamp
	$(VERL_VENV)/bin/python -m pytest -q tests/test_verl_loop.py tests/test_verl_data.py tests/test_constraints.py

# Re-resolve constraints/*.txt to the newest versions pyproject allows, then run the suite on them.
lock:
	.ci/lock $(PYTHON)
