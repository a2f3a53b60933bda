# Two commands set everything up on a fresh machine: `make demo` and `make test`.
# TORCH_SPEC picks the torch build; the default is the CPU wheel on this machine's disk.
# A GPU user runs e.g. `make test TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126"`.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check -q

.PHONY: demo test lint bench clean nnunet

# nnU-Net v2 without the extras its own pins pull (timm and a torchvision that does not match
# the CPU torch): the two packages with --no-deps, their runtime needs through strokelrp[nnunet]
NNUNET_SPEC ?= nnunetv2==2.8.1 dynamic-network-architectures==0.4.4

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.torch: | $(BIN)/python
	$(PIP) install $(TORCH_SPEC)
	@touch $@

$(VENV)/.run: pyproject.toml $(VENV)/.torch
	$(PIP) install -e .
	@touch $@

$(VENV)/.test: pyproject.toml $(VENV)/.run
	$(PIP) install -e ".[test]"
	@touch $@

$(VENV)/.nnunet: pyproject.toml $(VENV)/.run
	$(PIP) install --no-deps $(NNUNET_SPEC)
	$(PIP) install -e ".[nnunet]"
	@touch $@

nnunet: $(VENV)/.nnunet

demo: $(VENV)/.run
	$(BIN)/strokelrp demo $(DEMO_ARGS)

test: $(VENV)/.test $(VENV)/.nnunet
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: $(VENV)/.test
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

bench: $(VENV)/.run
	$(BIN)/python benchmarks/data_bench.py
	$(BIN)/python benchmarks/train_bench.py
	$(BIN)/python benchmarks/lrp_bench.py
	$(BIN)/python benchmarks/fuzz_bench.py

clean:
	rm -rf $(VENV) .pytest_cache
