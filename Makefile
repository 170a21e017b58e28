# Each target sets up its own virtual environment from pyproject.toml on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.gpunn-installed

.PHONY: demo test test-fast bench info clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test,demo,mpi]"
	touch $(STAMP)

demo: $(STAMP)  ## train the main job on data that needs no download
	$(PY) -m gpunn train

test: $(STAMP)  ## the whole test suite (slow tests included, GPU tests skip without a device)
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

bench: $(STAMP)
	$(PY) -m gpunn bench

info: $(STAMP)
	$(PY) -m gpunn info

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .benchmarks
