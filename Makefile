# The two commands of the quick start: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-ha test-cluster system-packages lint bench bench-edges mutate clean

$(STAMP): pyproject.toml cameras/camhub_node/__init__.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/camhub demo

# First the Debian packages the tests talk to (.ci/debian-packages): installed when root or with
# passwordless sudo, otherwise `make test` stops at once with the command to run.
# Lint first (fast, and a broken contract should not wait for the slow tests), then every test.
# The tests mostly wait (on sockets, processes, a browser), so three workers on two cores halve the wall
# time; a file's tests stay in one worker (they share its module fixtures). TEST_JOBS=0: one process.
TEST_JOBS ?= 3
test: system-packages lint
	$(BIN)/python -m pytest -n $(TEST_JOBS) --dist loadfile

system-packages:
	@.ci/system-packages

# Against real Home Assistant cores, installed into .cache/ by tests/ha/install.sh (once; idempotent): 2024.3.3
# (Python 3.11) for everything, and 2025.4 (it needs Python 3.13) for the camhub integration, when a python3.13
# runs here. tests/ha/unit: the integration's unit tests, in HA's own venv and test harness.
HA_2025 := .cache/ha-2025.4
PYTHON313 := $(shell for p in python3.13 $$HOME/.pyenv/versions/3.13*/bin/python3.13; do \
	$$p -c '' 2>/dev/null && { echo $$p; break; }; done)
test-ha: system-packages $(STAMP)
	tests/ha/install.sh
	.cache/ha/venv/bin/python -m pytest -c tests/ha/unit/pytest.ini tests/ha/unit
	$(BIN)/python -m pytest -m ha
ifneq ($(PYTHON313),)
	PYTHON=$(PYTHON313) tests/ha/install.sh $(HA_2025) 2025.4.4
	$(HA_2025)/venv/bin/python -m pytest -c tests/ha/unit/pytest.ini tests/ha/unit
	CAMHUB_HA_VENV=$(HA_2025)/venv CAMHUB_HA_LAG_S=20 $(BIN)/python -m pytest -m ha tests/test_homeassistant_integration.py
else
	@echo "make test-ha: Home Assistant 2025.4 not tested: it needs Python 3.13, and no python3.13 runs here"
endif

# Hubs, boards, HAProxy and viewers as separate machines: Linux network namespaces on 198.18.0.0/15 with no
# route out (tests/support/netbed.py). Needs root; the tests say so and skip without it.
test-cluster: system-packages $(STAMP)
	$(BIN)/python -m pytest -m cluster

# ruff; the import contract (layers, independence, no circles: [tool.importlinter]); mypy, strict, over the hub.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-cache
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python benchmarks/node_stream.py
	$(BIN)/python benchmarks/fanout.py
	$(BIN)/python benchmarks/motion.py

# The edge tier's capacity with 1, 2, 3 edges behind HAProxy, each edge's link capped by tbf (issue #22;
# benchmarks/README.md has the table). Needs root, like test-cluster: the network-namespace test bed. ≈ 3 min.
bench-edges: system-packages $(STAMP)
	$(BIN)/python benchmarks/edges.py

# Mutation testing of the core modules (slow, CPU-heavy; never part of `make test` or CI).
# MODULES="subscriber.py auth.py" picks some; MUTATE_JOBS sets how many mutants run at once; MUTATE_TIMEOUT
# the seconds a test may take before its mutant counts as killed by timeout (default 60).
MUTATE_JOBS ?= 1
mutate: $(STAMP)
	$(BIN)/python tools/mutate.py --max-children $(MUTATE_JOBS) $(if $(MUTATE_TIMEOUT),--timeout $(MUTATE_TIMEOUT)) $(MODULES)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .cache
