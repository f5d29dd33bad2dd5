# The README's two commands: `make demo` and `make test`. Both create the virtualenv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: demo test venv serve bench bench-quick screenshots clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test]"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/neon-tui --demo

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

serve: $(STAMP)
	$(BIN)/neon-tui simulator serve

# About 15 minutes on an idle machine (rotate_bench alone about 10); `make bench-quick` is a 2-minute smoke run.
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
