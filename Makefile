# The two commands of the quick start: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test system-packages lint bench mutate clean

$(STAMP): pyproject.toml cameras/camhub_node/__init__.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/camhub demo

# First the Debian packages the tests talk to (.ci/debian-packages): installed when root or with
# passwordless sudo, otherwise `make test` stops at once with the command to run.
test: system-packages $(STAMP)
	$(BIN)/python -m pytest

system-packages:
	@.ci/system-packages

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python benchmarks/node_stream.py
	$(BIN)/python benchmarks/fanout.py

# Mutation testing of the core modules (slow, CPU-heavy; never part of `make test` or CI).
# MODULES="subscriber.py auth.py" picks some; MUTATE_JOBS sets how many mutants run at once.
MUTATE_JOBS ?= 1
mutate: $(STAMP)
	$(BIN)/python tools/mutate.py --max-children $(MUTATE_JOBS) $(MODULES)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
