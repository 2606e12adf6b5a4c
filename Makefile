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

BROWSER_PKGS := chromium chromium-driver fonts-wqy-zenhei
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo -n)

.PHONY: setup browser demo test lint clean

setup: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Headless Chromium (and a CJK font) for the report's browser test; skipped if already installed.
# If it cannot be installed the browser test skips and says why.
browser:
	@dpkg -s $(BROWSER_PKGS) >/dev/null 2>&1 || { \
	  echo "installing $(BROWSER_PKGS) for the report test"; \
	  ($(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(BROWSER_PKGS)) \
	  || echo "WARNING: could not install $(BROWSER_PKGS); the browser test will skip"; }

demo: setup
	test -f $(DEMO_DIR)/manifest.jsonl || $(BIN)/vtcurate demo-data $(DEMO_DIR)
	$(BIN)/vtcurate run configs/demo.yaml --input $(DEMO_DIR)/manifest.jsonl --run-dir $(RUN_DIR) --runner $(RUNNER)
	$(BIN)/python -m vtcurate.demo.check $(DEMO_DIR) $(RUN_DIR)

lint: setup
	$(BIN)/ruff check vtcurate tests

test: setup browser lint
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest

clean:
	rm -rf $(VENV) $(DEMO_DIR) runs .pytest_cache
