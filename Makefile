# The two commands that set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test bench lint venv clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,credit]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/creditflow demo

# Two workers, one per core: much of the suite waits on fsync, PostgreSQL, the broker or the browser.
# A test file stays on one worker (its module fixtures are built once). TEST_WORKERS=0 runs in-process.
TEST_WORKERS ?= 2
test: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow" -n $(TEST_WORKERS) --dist loadfile

# Benchmarks print JSON; slow soak tests (marked `slow`) run here, not in CI. pytest's "no tests" (5) is fine here.
bench: $(STAMP)
	$(BIN)/python -m pytest -q -m slow || [ $$? -eq 5 ]
	$(BIN)/creditflow bench ledger --ops 20000 --json | tee bench-ledger.json
	$(BIN)/creditflow bench financing --json | tee bench-financing.json
	$(BIN)/creditflow bench credit --json | tee bench-credit.json
	$(BIN)/creditflow bench iot --mqtt mqtt://127.0.0.1:1883 --json | tee bench-iot.json

# ruff, mypy, and the architecture contracts in pyproject ([tool.importlinter]; lint/ holds our own contract type).
lint: $(STAMP)
	$(BIN)/ruff check src tests bench lint
	$(BIN)/ruff format --check src tests bench lint
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

clean:
	rm -rf $(VENV) build *.egg-info
