# The two commands the README shows: `make demo` (set up + main job) and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint web

$(BIN)/lagchand-edge: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

# The browser page's JavaScript (LiteRT.js), from the npm registry at build time, never at run time.
WEB_STAMP := apps/web/node_modules/.installed

$(WEB_STAMP): apps/web/package-lock.json
	@if command -v npm >/dev/null; then cd apps/web && npm ci --no-audit --no-fund --loglevel=error && touch node_modules/.installed; \
	else echo "npm not found: the browser page (lagchand-edge serve) is not installed, and its tests skip"; fi

web: $(WEB_STAMP)

demo: $(BIN)/lagchand-edge web
	$(BIN)/lagchand-edge quickstart --out runs/quickstart --force

test: $(BIN)/lagchand-edge web
	$(BIN)/python -m pytest

lint: $(BIN)/lagchand-edge
	$(BIN)/ruff check lagchand_edge converters calibration apps tests
