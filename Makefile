# One task runner. `make run` and `make test` work on a fresh machine with only Python 3.11 and pip.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help install run test test-postgres test-fast test-browser lint typecheck imports bench clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

# pip's own progress (what it downloads and builds) shows: the first install takes a few minutes (torch, onnxruntime)
$(STAMP): pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) on PATH"; exit 1; }
	@test -x $(BIN)/python || { echo "==> creating $(VENV) with $(PYTHON)"; $(PYTHON) -m venv $(VENV); }
	@echo "==> installing Ragline and its dependencies into $(VENV) (the first time takes a few minutes)"
	@start=$$(date +%s); \
	$(BIN)/python -m pip install --disable-pip-version-check -c constraints.txt -e '.[dev]' \
		|| { echo "==> install failed"; exit 1; }; \
	echo "==> installed in $$(( $$(date +%s) - start )) s"
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install Ragline with dev tools

run: $(STAMP) ## serve the API on 127.0.0.1:8000 with the embedded defaults (./data)
	@echo "==> starting the API (Ctrl-C stops it; GET /health says when it is ready)"
	$(BIN)/ragline serve

TEST_WORKERS ?= 2

test: $(STAMP) ## run the whole test suite (TEST_WORKERS processes, one test file each at a time)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

test-postgres: $(STAMP) ## API, ingest-worker, run-store and OpenAPI fuzz suites on a throwaway PostgreSQL (needs its binaries)
	VENV_PYTHON=$(BIN)/python bash .ci/postgres.sh -n $(TEST_WORKERS) --dist loadfile

test-browser: $(STAMP) ## the web console and API docs in headless Chromium (apt-get install chromium chromium-driver)
	$(BIN)/python -m pytest -q tests/browser

test-fast: $(STAMP) ## tests without the slow/e2e/crash markers
	$(BIN)/python -m pytest -q -m "not slow and not e2e and not crash"

lint: $(STAMP) ## ruff, mypy (strict on engine/ and ingest/), import-linter layers
	$(BIN)/ruff check engine ingest api tests benchmarks
	$(BIN)/mypy engine ingest api
	$(BIN)/lint-imports

BENCH_STAMP := $(VENV)/.bench-installed

# matplotlib for the figures: the `bench` extra, installed on top of the dev install
$(BENCH_STAMP): $(STAMP) pyproject.toml constraints.txt
	$(BIN)/python -m pip install --disable-pip-version-check -c constraints.txt -e '.[dev,bench]'
	@touch $(BENCH_STAMP)

bench: $(BENCH_STAMP) ## retrieval quality/latency, ingest, agent overhead, start-up and memory benchmarks, then the README's figures
	$(BIN)/python benchmarks/ingest.py
	$(BIN)/python benchmarks/retrieval_quality.py
	$(BIN)/python benchmarks/retrieval_latency.py
	$(BIN)/python benchmarks/agent_overhead.py
	$(BIN)/python benchmarks/workflow_overhead.py
	$(BIN)/python benchmarks/startup.py
	$(BIN)/python benchmarks/memory.py
	$(BIN)/python benchmarks/delete_stall.py
	$(BIN)/python benchmarks/edge_gil.py
	$(BIN)/python benchmarks/plots.py

# LlamaIndex in a virtual environment of its own (outside the repository), never a Ragline dependency
PEERS_VENV ?= $(HOME)/.cache/ragline/peers/llamaindex
PEERS_REQUIREMENTS := benchmarks/peers/requirements-llamaindex.txt

$(PEERS_VENV)/.installed: $(PEERS_REQUIREMENTS)
	@test -x $(PEERS_VENV)/bin/python || $(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/python -m pip install --disable-pip-version-check torch==2.13.0+cpu
	$(PEERS_VENV)/bin/python -m pip install --disable-pip-version-check -r $(PEERS_REQUIREMENTS)
	@touch $@

.PHONY: bench-peers
bench-peers: $(STAMP) $(PEERS_VENV)/.installed ## Ragline next to LlamaIndex on SciFact, alternating in one run, with the ratios
	$(BIN)/python benchmarks/peers/run.py --peer-python $(PEERS_VENV)/bin/python

clean: ## remove the virtual environment and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
