# The README's two commands: `make demo` and `make test`. Both create the virtualenv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: demo test venv serve bench screenshots clean

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

# Everything but the tests marked slow (over ~2 s, or needing PostgreSQL, a keyring, a clipboard or tmux).
.PHONY: quick
quick: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

serve: $(STAMP)
	$(BIN)/neon-tui simulator serve

bench: $(STAMP)
	$(BIN)/python -m benchmarks.rotate_bench
	$(BIN)/python -m benchmarks.fault_soak
	$(BIN)/python -m benchmarks.tui_bench
	$(BIN)/python -m benchmarks.pg_bench

screenshots: $(STAMP)
	$(BIN)/python scripts/make_screenshots.py

clean:
	rm -rf $(VENV) dist build .pytest_cache
