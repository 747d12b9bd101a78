# trading_nb: the two commands are `make run` (set up, then the main job) and `make test`.
SHELL := /bin/bash
VENV  := .venv
BIN   := $(VENV)/bin
STAMP := $(VENV)/.trading_nb-installed

.PHONY: setup run panel test nbtest pytest lab docs docs-check export clean-nbs bench gpu-check help
help:
	@echo "make run    set up .venv (Python 3.12) and run the main job on the bundled S&P 500 data"
	@echo "make panel  set up .venv and run the panel job: one model across the bundled 7-stock panel, judged cross-sectionally"
	@echo "make test   set up .venv and run every test (nbdev_test on the notebooks, then pytest)"
	@echo "make lab    open JupyterLab on nbs/"
	@echo "make docs   build the docs site into _docs/ (Quarto where installed, otherwise Sphinx; no network needed)"
	@echo "make docs-check  build the site and check it: links, pages, and in headless chromium the site, JupyterLab and a report"
	@echo "make bench  run the benchmark suite; writes bench/results.md and bench/results.json"
	@echo "make gpu-check  on a CUDA machine: the gpu notebook cells, the GPU benchmark rows and torchrun over every GPU, one table"

# Idempotent: the stamp is newer than the files that decide what is installed, so a second run is instant.
setup: $(STAMP)
$(STAMP): settings.ini setup.py pyproject.toml
	@set -e; py=$$(tools/find-python); \
	if [ -x $(BIN)/python ] && ! $(BIN)/python -c 'import sys; sys.exit(sys.version_info[:2] < (3, 12))'; then \
	  echo "$(VENV) has an old Python; recreating it"; rm -rf $(VENV); fi; \
	[ -x $(BIN)/python ] || { echo "creating $(VENV) with $$py"; "$$py" -m venv $(VENV); }; \
	set -o pipefail; quiet() { grep -v -e '^WARNING: Location' -e '^ *$$' || true; }; \
	$(BIN)/python -m pip install --quiet --upgrade pip 2>&1 | quiet; \
	$(BIN)/python -m pip install --quiet -e ".[dev]" 2>&1 | quiet; \
	$(BIN)/python -m pip check
	@touch $(STAMP)
	@echo "$(VENV) is ready: $$($(BIN)/python --version), $$($(BIN)/python -c 'import torch; print("torch", torch.__version__)')"

run: setup
	$(BIN)/trading-nb summary --data sp500
	$(BIN)/trading-nb summary --data stocks --on-invalid drop
	$(BIN)/trading-nb train --data sp500 --out runs/sp500

# The panel job: the bundled stocks (one invalid Samsung bar is dropped and reported), excess target, cross-sectional evaluation.
panel: setup
	$(BIN)/trading-nb train --data stocks --on-invalid drop --out runs/stocks

nbtest: setup
	$(BIN)/nbdev_test --do_print --timing

pytest: setup
	$(BIN)/python -m pytest -q tests

test: setup
	$(BIN)/nbdev_test --timing
	$(BIN)/python -m pytest -q tests

lab: setup
	$(BIN)/jupyter lab nbs

export: setup
	$(BIN)/nbdev_export
	$(BIN)/nbdev_clean

docs: setup
	@if command -v quarto >/dev/null 2>&1; then $(BIN)/nbdev_docs; else \
	  echo "Quarto is not installed: building the site with Sphinx from nbdev's processed notebooks (tools/build-docs)"; \
	  $(BIN)/python tools/build-docs; fi

bench: setup
	$(BIN)/python bench/run.py

# The docs site built without Quarto, its offline link check, and the real-browser tests (chromium; skipped where it is missing)
docs-check: setup
	$(BIN)/python -m pytest -q tests/test_docs.py tests/test_browser.py

# Everything that needs CUDA, in one run (tools/gpu-check): gpu cells, GPU benchmark rows, torchrun over all GPUs.
gpu-check: setup
	$(BIN)/python tools/gpu-check
