"""Scale: 10/100/1,000-step chains and fan-outs of no-op local steps on one local host.

    .venv/bin/python benchmarks/scale.py [--sizes 10,100,1000] [--shapes chain,fanout]

For each DAG: wall time from HTTP submit to Finished, the host process's own CPU time (its
orchestrator replays, activities and HTTP; the step subprocesses are not counted) per step —
flat across sizes means replay cost grows linearly, not quadratically — the host's peak RSS, and
how long a GET of the ended run with all its steps takes once the host's short-lived cache of
ended runs has expired (one run.json read and a listing of its step records).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from common import local_stack, machine, timed_run
from pipeline_overhead import chain, fan_out, publish

from shared.control import ENDED_RUN_TTL_SECONDS

CLOCK_TICKS = 100  # os.sysconf("SC_CLK_TCK") on Linux


def host_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def host_peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10,100,1000")
    parser.add_argument("--shapes", default="chain,fanout")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    shapes = {"chain": chain, "fanout": fan_out}
    rows = []
    with tempfile.TemporaryDirectory() as scratch, local_stack() as (client, _env, host):
        for shape in args.shapes.split(","):
            for size in sizes:
                pipeline_id = publish(client, Path(scratch) / f"{shape}{size}", shapes[shape](size))
                cpu_before = host_cpu_seconds(host.process.pid)
                seconds, run = timed_run(client, pipeline_id)
                assert run["Status"] == "Finished", run["Error"]
                steps = len(run["Steps"])
                cpu = host_cpu_seconds(host.process.pid) - cpu_before
                time.sleep(ENDED_RUN_TTL_SECONDS + 0.1)  # read it as a new reader would, not from the cache
                started = time.perf_counter()
                assert len(client.get_run(run["Id"])["Steps"]) == steps
                read_ms = (time.perf_counter() - started) * 1000
                rows.append((shape, steps, seconds, cpu / steps * 1000, host_peak_rss_mb(host.process.pid), read_ms))
                print(f"{shape} {steps}: {seconds:.2f}s", flush=True)
    print(f"\nmachine: {machine()}")
    print("| DAG | steps | submit to Finished | host CPU per step | host peak RSS | GET run with steps |")
    print("|---|---|---|---|---|---|")
    for shape, steps, seconds, cpu_ms, rss, read_ms in rows:
        print(f"| {shape} | {steps} | {seconds:.2f} s | {cpu_ms:.1f} ms | {rss:.0f} MB | {read_ms:.0f} ms |")


if __name__ == "__main__":
    main()
