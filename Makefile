# Two commands on a fresh machine: `make demo` and `make test`. Both install what they need.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo demo-trigger demo-batch test test-fast bench serve clean

install: $(STAMP) node_modules/.bin/azurite

# The project is installed editable in setuptools' compat mode: a plain path entry instead of an
# import hook, which would add ~15 ms to the start of every local step's interpreter (BENCHMARKS.md).
$(STAMP): pyproject.toml requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]" --config-settings editable_mode=compat
	touch $(STAMP)

node_modules/.bin/azurite: package.json package-lock.json
	npm ci --no-audit --no-fund --silent
	touch node_modules/.bin/azurite

# Start the local host (+ Azurite), publish and run the iris pipeline twice (the second time every step is Reused).
demo: install
	$(PY) examples/iris/demo.py

# Upload-triggered retraining: a datastore schedule watches iris/incoming/; a burst of 3 CSV uploads starts one run.
demo-trigger: install
	$(PY) examples/iris/trigger_demo.py

# Batch scoring on a schedule: registers the newest iris model, scores scoring/incoming/*.csv every 15 s (twice).
demo-batch: install
	$(PY) examples/batch-scoring/demo.py

# The whole test suite (unit, orchestrator, storage on Azurite, devhost + HTTP integration).
test: install
	$(PY) -m pytest

test-fast: install
	$(PY) -m pytest -m "not integration"

bench: install
	$(PY) benchmarks/run_all.py

serve: install
	$(VENV)/bin/mlpipe serve

clean:
	rm -rf .mlpipe
