# The two commands a new user needs: `make demo` (main job) and `make test`.
# Every target installs what it needs, idempotently, and reuses what is cached.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)

.PHONY: demo test lint up down status venv image browser

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/pip install --quiet --upgrade pip
	@PYTHONWARNINGS=ignore $(BIN)/pip install --quiet -e '.[dev]'  # no setuptools editable-install banner
	@rm -f $(VENV)/.installed-* && touch $@

# CHOREO_STACK=docker: the same stack from docker-compose.yml (needs a Docker engine).
up: venv
	@if [ "$$CHOREO_STACK" = docker ]; then \
		docker compose up -d --wait kafka postgres connect jaeger; \
	else $(BIN)/choreo dev up; fi

down: venv
	@$(BIN)/choreo dev down

status: venv
	@$(BIN)/choreo dev status

# The project's image (choreo-app:latest) with Docker, or Podman where no Docker engine answers;
# rebuilt only when its inputs change. tests/containers runs it.
image:
	@infra/containers/image.sh >/dev/null

# Debian's Chromium for the console's browser tests (Playwright drives it; no browser download).
browser:
	@test -x /usr/bin/chromium || apt-get install -y -q chromium chromium-driver >/dev/null \
		|| (apt-get update -q >/dev/null && apt-get install -y -q chromium chromium-driver >/dev/null)

demo: up browser
	@$(BIN)/python -m demo

lint: venv
	@$(BIN)/ruff check choreo tests services bench demo
	@$(BIN)/ruff format --check choreo tests services bench demo
	@$(BIN)/mypy
	@$(BIN)/lint-imports --no-cache

test: up lint image browser
	@$(BIN)/python -m pytest
