# Two commands do everything on a fresh machine: `make demo` and `make test`.
# Set-up is idempotent: .venv is (re)built only when setup.cfg or pyproject.toml changes.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= demo_data
RUN_DIR ?= runs/demo
RUNNER ?= ray

.PHONY: setup demo test lint clean

setup: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: setup
	test -f $(DEMO_DIR)/manifest.jsonl || $(BIN)/vtcurate demo-data $(DEMO_DIR)
	$(BIN)/vtcurate run configs/demo.yaml --input $(DEMO_DIR)/manifest.jsonl --run-dir $(RUN_DIR) --runner $(RUNNER)
	$(BIN)/python -m vtcurate.demo.check $(DEMO_DIR) $(RUN_DIR)

lint: setup
	$(BIN)/ruff check vtcurate tests

test: setup lint
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest

clean:
	rm -rf $(VENV) $(DEMO_DIR) runs .pytest_cache
