# Two commands on a fresh machine: `make serve` and `make test` (see README "Quick start").
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: serve test lint bench install

$(BIN)/sidecar: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

install: $(BIN)/sidecar

serve: install
	$(BIN)/sidecar serve

test: install
	$(BIN)/ruff check sidecar tests bench
	$(BIN)/mypy sidecar
	$(BIN)/pytest

bench: install
	$(BIN)/python -m bench.run_all
