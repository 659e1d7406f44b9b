# The two commands of the README, and the steps they share. Every target is idempotent:
# the environment is rebuilt only when pyproject.toml or this file changes.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint install system assets web

## make demo: install what is missing, then run the main job on the embedded default.
demo: install
	$(BIN)/headcast demo

## make test: install what is missing, then lint, type-check and run the whole test suite.
test: install assets lint
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

install: system $(STAMP) web

# Debian packages: opencv-doc carries the sample clip (Megamind.avi); prometheus (and promtool) for the
# metrics tests and ops/prometheus; chromium for the browser pages' tests (Playwright drives it).
system:
	@bash ops/install-system-packages.sh opencv-doc prometheus chromium

# The browser pages' one dependency (MediaPipe's tasks-vision: its module, WASM), exactly as locked.
WEB_STAMP := web/node_modules/.installed
web: $(WEB_STAMP)

$(WEB_STAMP): web/package.json web/package-lock.json
	@command -v npm >/dev/null || bash ops/install-system-packages.sh nodejs npm
	npm ci --prefix web --no-audit --no-fund
	touch $(WEB_STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first and pinned: the 2.13.0 CPU wheel; any other resolution pulls CUDA builds.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# Model files for the tests (sha256-pinned, cached in the user cache directory).
assets: install
	$(BIN)/headcast assets fetch
