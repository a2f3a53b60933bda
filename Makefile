# Two commands set everything up on a fresh machine: `make demo` and `make test`.
# TORCH_SPEC picks the torch build; the default is the CPU wheel on this machine's disk.
# A GPU user runs e.g. `make test TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126"`.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check -q

VIEWER_JS := src/strokelrp/report/viewer_assets/niivue.umd.js

.PHONY: demo test lint bench clean viewer browser nnunet

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

# The viewer's JavaScript: NiiVue from npm (js/package-lock.json pins it), built on first use.
$(VIEWER_JS): js/package.json js/package-lock.json js/build.sh
	@command -v npm >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm; } \
	  || { echo "make: npm is needed to install the viewer's JavaScript (@niivue/niivue)"; exit 1; }
	js/build.sh

viewer: $(VIEWER_JS)

# Debian's Chromium for the browser tests (installed as root; skipped with a reason otherwise).
browser: $(VENV)/.browser
$(VENV)/.browser: | $(BIN)/python
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } \
	  || echo "note: apt-get could not install chromium: the browser tests will be skipped"; \
	else echo "note: no chromium and no root apt-get: the browser tests will be skipped"; fi
	@touch $@

demo: $(VENV)/.run $(VIEWER_JS)
	$(BIN)/strokelrp demo $(DEMO_ARGS)

test: $(VENV)/.test $(VENV)/.nnunet $(VIEWER_JS) $(VENV)/.browser
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
	rm -rf $(VENV) .pytest_cache js/node_modules $(VIEWER_JS)
