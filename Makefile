# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-faults lint typecheck bench bench-receipts bench-atsize bench-atsize-clean \
	e2e-deps deploy-check image-test clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[embedded,test,bench]'
	touch $(STAMP)

run: $(STAMP)
	CMP_DATA_DIR=$${CMP_DATA_DIR:-$(CURDIR)/.data/run} $(BIN)/cmpd serve --demo

test: $(STAMP) e2e-deps deploy-check
	$(BIN)/ruff check cmp tests loadtest
	$(BIN)/ruff format --check cmp tests loadtest
	$(BIN)/mypy cmp
	$(BIN)/python -m pytest -q

# The long fault suite (tests/faults): many SIGKILL cycles, proxy faults and lock waits
# under more load; `make test` runs the short profile of the same tests.
test-faults: $(STAMP)
	$(BIN)/python -m pytest -q -m faults_long tests/faults

lint: $(STAMP)
	$(BIN)/ruff check cmp tests loadtest
	$(BIN)/ruff format --check cmp tests loadtest

typecheck: $(STAMP)
	$(BIN)/mypy cmp

# npm packages of the third-party banner tests (pinned in tests/e2e/package-lock.json).
e2e-deps: tests/e2e/node_modules/.installed

tests/e2e/node_modules/.installed: tests/e2e/package-lock.json
	@if command -v npm >/dev/null; then \
	  npm ci --prefix tests/e2e --ignore-scripts --no-audit --no-fund >/dev/null && \
	  touch $@; \
	else echo "npm not found: the third-party banner tests will skip (fail when CI=true)"; fi

# Static checks of deploy/ (hadolint, Compose schema, kubernetes-validate, yamllint),
# pinned in the `deploy` extra; all offline.
DEPLOY_STAMP := $(VENV)/.deploy-installed

$(DEPLOY_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[deploy]'
	touch $(DEPLOY_STAMP)

deploy-check: $(DEPLOY_STAMP)
	$(BIN)/ruff check deploy
	$(BIN)/python deploy/check.py

# deploy/Dockerfile built by podman (on a debootstrap stand-in for its Debian base) and
# run against a real PostgreSQL: deploy/image_check.py. Root, podman and debootstrap.
image-test: $(STAMP)
	$(BIN)/python deploy/image_check.py

bench: $(STAMP)
	$(BIN)/python -m loadtest

# Receipts, proofs and integration delay at 1 M records (~5 minutes; loadtest/README.md).
bench-receipts: $(STAMP)
	$(BIN)/python -m loadtest.receipts

# The log at 0, 1 M and 20 M events (loadtest/README.md). The filled databases stay in
# CMP_ATSIZE_DATA (default /work/atsize-data, ~45 GB with the run's copy): the first run
# fills them (~30-40 min), later runs reuse them; bench-atsize-clean removes them.
bench-atsize: $(STAMP)
	$(BIN)/python -m loadtest.atsize

bench-atsize-clean: $(STAMP)
	$(BIN)/python -m loadtest.atsize --clean

clean:
	rm -rf $(VENV) .data build *.egg-info
