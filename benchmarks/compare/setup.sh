#!/usr/bin/env bash
# Builds the separate benchmark environment .bench-venv/ (at the repo root) holding Prefect 3 and
# Dagster for benchmarks/compare/run.py. Not part of the project's dependencies.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
python3 -m venv .bench-venv
.bench-venv/bin/python -m pip install --quiet --upgrade pip
.bench-venv/bin/python -m pip install --quiet -r benchmarks/compare/requirements.txt
.bench-venv/bin/python -c "import prefect, dagster; print('prefect', prefect.__version__, '/ dagster', dagster.__version__)"
