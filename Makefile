# The README's two commands: `make demo` and `make test`. Both create the virtualenv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
PYTEST_ARGS ?=

.PHONY: demo test venv serve bench bench-quick screenshots clean

# Two stamps: the demo needs neon-tui and its runtime dependencies only (`-e .`); the tests also need the
# [test] extra. The heavy pip step is not quiet, so a first `make demo` shows progress instead of a minute of nothing.
$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"

$(STAMP): $(BIN)/python pyproject.toml constraints.txt
	@echo "Installing neon-tui and its dependencies into $(VENV) (about a minute, first time only)..."
	$(BIN)/python -m pip install --progress-bar on -c constraints.txt -e .
	touch $(STAMP)

$(TEST_STAMP): $(STAMP)
	@echo "Installing the test dependencies into $(VENV) (first time only)..."
	$(BIN)/python -m pip install --progress-bar on -c constraints.txt -e ".[test]"
	touch $(TEST_STAMP)

venv: $(TEST_STAMP)

demo: $(STAMP)
	$(BIN)/neon-tui --demo

test: $(TEST_STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Everything but the tests marked slow (over ~2 s, or needing PostgreSQL, a keyring, a clipboard or tmux).
.PHONY: quick
quick: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

serve: $(STAMP)
	$(BIN)/neon-tui simulator serve

# rotate_bench about 7 minutes on an idle machine, pg_bench about 5, plus the fault soak and the TUI figures;
# `make bench-quick` is a 2-minute run.
bench: $(STAMP)
	$(BIN)/python -m benchmarks.rotate_bench
	$(BIN)/python -m benchmarks.fault_soak
	$(BIN)/python -m benchmarks.tui_bench
	$(BIN)/python -m benchmarks.pg_bench

bench-quick: $(STAMP)
	$(BIN)/python -m benchmarks.rotate_bench --quick
	$(BIN)/python -m benchmarks.fault_soak --quick

screenshots: $(STAMP)
	$(BIN)/python scripts/make_screenshots.py

clean:
	rm -rf $(VENV) dist build .pytest_cache
