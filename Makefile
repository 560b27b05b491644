# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck bench e2e-deps clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	CMP_DATA_DIR=$${CMP_DATA_DIR:-$(CURDIR)/.data/run} $(BIN)/cmpd serve --demo

test: $(STAMP)
	$(BIN)/ruff check cmp tests loadtest
	$(BIN)/mypy cmp
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check cmp tests loadtest

typecheck: $(STAMP)
	$(BIN)/mypy cmp

bench: $(STAMP)
	$(BIN)/python -m loadtest

clean:
	rm -rf $(VENV) .data build *.egg-info
