# vidpipe: `make demo` and `make test` do all set-up themselves and are safe to re-run.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3.12 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: setup system venv up down status demo test lint unit integration faults bench clean

## System packages (apt): PostgreSQL/Redis if absent, JDBC driver, npm, GStreamer RTSP, Chromium.
system:
	bash infra/local/install-system.sh
	bash infra/local/install-media.sh
	bash infra/local/install-browser.sh

## Python environment: torch pinned first (CPU/CUDA wheels), then vidpipe with every extra.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install -q -e '.[ml,renderer,dev]'
	@touch $(STAMP)

venv: $(STAMP)

setup: system venv

## Local infrastructure: Kafka API (Tansu), S3 (SeaweedFS), Postgres, Redis, MLflow, MongoDB.
up: setup
	$(BIN)/vidpipe up

down:
	$(BIN)/vidpipe down

status:
	$(BIN)/vidpipe status

## vtest.avi over RTSP through decoder -> detector -> renderer; writes out/demo-summary.json.
demo: up
	$(BIN)/vidpipe demo

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

unit: venv
	$(BIN)/pytest -m "not integration"

integration: up
	$(BIN)/pytest -m integration

## Lint, then unit and integration tests against the real local services.
test: up lint
	$(BIN)/pytest

## Fault-injection scenarios with full counts; prints a JSON line of figures per scenario.
faults: up
	VIDPIPE_FAULTS_FULL=1 $(BIN)/pytest -m faults -s -p no:warnings tests/faults

bench: up
	$(BIN)/python benchmarks/pipeline.py
	$(BIN)/python benchmarks/training.py
	$(BIN)/python benchmarks/request_latency.py

clean:
	rm -rf out .pytest_cache .mypy_cache .ruff_cache
