"""Where the time of a one-step run goes, from HTTP submit to the client seeing it Finished.

    .venv/bin/python benchmarks/run_latency.py [--runs 20]

Each run is a fresh one-step pipeline (its step is never reused) running an empty script. The
phases come from the client's clock and the run's and step's recorded times (the same machine's
clock): the submit call; accepted to the step started (orchestration start, the run_plan activity,
the step's claim and spawn); the step; its end to the run's end (run_finished); the run's end to
the client's long poll answering. Medians over the runs after the first two.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from common import epoch_seconds, local_stack, machine
from pipeline_overhead import chain, publish


def phases(client, pipeline_id: str) -> dict[str, float]:
    started = time.time()
    run = client.submit(pipeline_id, "latency")
    accepted = time.time()
    final = client.wait_for_run(run["Id"], poll_seconds=0.05, timeout=60)
    seen = time.time()
    assert final["Status"] == "Finished", final["Error"]
    step = final["Steps"][0]
    assert not step["Reused"]
    return {
        "submit call (HTTP 202)": accepted - started,
        "accepted → step started": epoch_seconds(step["StartTimeUtc"]) - accepted,
        "step (empty script)": epoch_seconds(step["EndTimeUtc"]) - epoch_seconds(step["StartTimeUtc"]),
        "step ended → run ended": epoch_seconds(final["EndTimeUtc"]) - epoch_seconds(step["EndTimeUtc"]),
        "run ended → client sees it": seen - epoch_seconds(final["EndTimeUtc"]),
        "total": seen - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    measured = []
    with tempfile.TemporaryDirectory() as scratch, local_stack() as (client, _env, _host):
        for index in range(args.runs + 2):
            pipeline_id = publish(client, Path(scratch) / f"p{index}", chain(1, f"latency{index}"))
            measured.append(phases(client, pipeline_id))
    measured = measured[2:]  # the host's first runs warm it up
    print(f"machine: {machine()}; {len(measured)} one-step runs, medians")
    print("| phase | median | min | max |")
    print("|---|---:|---:|---:|")
    for phase in measured[0]:
        values = [run[phase] * 1000 for run in measured]
        print(f"| {phase} | {statistics.median(values):.1f} ms | {min(values):.1f} ms | {max(values):.1f} ms |")


if __name__ == "__main__":
    main()
