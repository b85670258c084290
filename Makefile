# The two commands the README shows: `make demo` (set up + main job) and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint

$(BIN)/lagchand-edge: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

demo: $(BIN)/lagchand-edge
	$(BIN)/lagchand-edge quickstart --out runs/quickstart --force

test: $(BIN)/lagchand-edge
	$(BIN)/python -m pytest

lint: $(BIN)/lagchand-edge
	$(BIN)/ruff check lagchand_edge converters calibration apps tests
