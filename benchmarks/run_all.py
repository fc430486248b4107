"""Every benchmark, one after the other, each printing its own table (`make bench`).

    .venv/bin/python benchmarks/run_all.py [--skip NAME ...]

The Prefect/Dagster comparison runs only when its separate environment exists
(`bash benchmarks/compare/setup.sh`). BENCHMARKS.md gives each command on its own, with the
figures it printed on the development machine.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = {
    "durable_engine": ["durable_engine.py"],
    "fingerprint": ["fingerprint_bench.py"],
    "storage_requests": ["storage_requests.py"],
    "local_step_start": ["local_step_start.py"],
    "pipeline_overhead": ["pipeline_overhead.py"],
    "run_latency": ["run_latency.py"],
    "scale": ["scale.py"],
    "http_load": ["http_load.py"],
    "triggers": ["triggers.py"],
    "compare": ["compare/run.py"],
}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--skip", nargs="*", default=[], choices=sorted(BENCHMARKS))
    args = parser.parse_args()
    failed = []
    for name, command in BENCHMARKS.items():
        if name in args.skip:
            continue
        if name == "compare" and not (HERE.parent / ".bench-venv" / "bin" / "python").exists():
            print("\n## compare: skipped (run `bash benchmarks/compare/setup.sh` once to include it)", flush=True)
            continue
        print(f"\n## {name} (load average {' '.join(f'{x:.2f}' for x in os.getloadavg())})", flush=True)
        if subprocess.run([sys.executable, str(HERE / command[0]), *command[1:]], cwd=HERE.parent).returncode:
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
