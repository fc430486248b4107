"""How long a local no-op step takes on the local backend alone, by how interpreters are readied.

    .venv/bin/python benchmarks/local_step_start.py [--steps 200] [--rounds 3]

No orchestrator and no storage requests (an empty script has no outputs and an empty log): the
LocalBackend submits `python noop.py` and polls it until Completed, one step after the other,
for each MLPIPE_LOCAL_SPARE_INTERPRETER value in turn (rounds alternate them, as the machine's
speed drifts). Reports the median submit-to-Completed time per step and the machine's CPU per
step (all processes: /proc/stat), next to a plain `python noop.py` spawn.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import machine, machine_busy_seconds, spawn_floor

from shared.compute import StepJobRequest
from shared.settings import reset_settings

MODES = ("fork", "on", "off")


def run_steps(backend, script: Path, count: int) -> tuple[float, float]:
    """Median seconds per step and the machine's CPU seconds per step."""
    durations = []
    busy_before = machine_busy_seconds()
    for n in range(count):
        request = StepJobRequest(run_id="bench", step_name=f"s{n}", script=str(script), source_dir=str(script.parent),
                                 arguments=[str(n)], inputs={}, outputs={}, environment={}, compute_name="local",
                                 compute_settings={}, step_type="python", step_settings={}, attempt=1)
        started = time.perf_counter()
        status = backend.poll(backend.submit(request), wait_seconds=30)
        durations.append(time.perf_counter() - started)
        assert status.state == "Completed", status.error
    return statistics.median(durations), (machine_busy_seconds() - busy_before) / count


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        os.environ["MLPIPE_DATA_DIR"] = str(Path(scratch) / "data")
        script = Path(scratch) / "src" / "noop.py"
        script.parent.mkdir()
        script.write_text("")
        import shared.compute.local as local

        backend = local.LocalBackend()
        results: dict[str, list[tuple[float, float]]] = {mode: [] for mode in MODES}
        floors = []
        for _ in range(args.rounds):
            floors.append(spawn_floor(script, 20))
            for mode in MODES:
                os.environ["MLPIPE_LOCAL_SPARE_INTERPRETER"] = mode
                reset_settings()
                run_steps(backend, script, 5)  # readies the spare or template
                time.sleep(0.3)
                results[mode].append(run_steps(backend, script, args.steps))
                local.discard_spare_interpreter()
    print(f"machine: {machine()}; {args.steps} steps one after the other, {args.rounds} rounds")
    print("| how interpreters are readied | submit to Completed, per step (each round) | machine CPU per step |")
    print("|---|---:|---:|")
    print(f"| plain `python noop.py` spawn, for scale | {statistics.median(floors) * 1000:.1f} ms | - |")
    for mode in MODES:
        walls = [wall for wall, _ in results[mode]]
        cpus = [cpu for _, cpu in results[mode]]
        listed = ", ".join(f"{wall * 1000:.1f}" for wall in walls)
        print(f"| MLPIPE_LOCAL_SPARE_INTERPRETER={mode} | {statistics.median(walls) * 1000:.1f} ms ({listed}) "
              f"| {statistics.median(cpus) * 1000:.1f} ms |")


if __name__ == "__main__":
    sys.exit(main())
