# Two commands do everything: `make demo` and `make test`. Both install first, into .venv/.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install system-deps demo test test-all lint benchmarks clean

install: $(STAMP)

# torch is installed on its own first, pinned to the CPU build: once it is there, the train
# extra's `torch==2.13.0` is already satisfied and pip never reaches for the CUDA packages.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check torch==2.13.0
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[all]'
	touch $(STAMP)

# What the tests drive besides Python (Chromium, PostgreSQL's programs), installed when missing.
system-deps:
	tools/system-deps

demo: install
	$(BIN)/digits data fetch
	$(BIN)/digits compare --models ann,cnn --epochs 2 --out runs/demo

test: install system-deps
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# Everything, including the checks marked slow (full-data training gates).
test-all: install system-deps
	$(BIN)/python -m pytest -q -m "slow or not slow" $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

benchmarks: install
	$(BIN)/python benchmarks/train_speed.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
