"""Durable engine throughput with no-op activities, beside raw floors measured in the same run.

    .venv/bin/python benchmarks/durable_engine.py [--sequential 500] [--fan-out 1000] [--repeat 3] [--profile]

Runs the devhost engine in-process (real SDK replay, real SQLite task hub in a temp dir, WAL +
synchronous=NORMAL), no HTTP. Floors: the bare cost of the same no-op function through a thread
pool via the asyncio loop, one at a time (sequential) and all at once (fan-out).
Targets: >= 250 sequential activities/s, >= 1,000 activities/s in a 1,000-wide fan-out.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import logging
import os
import pstats
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import azure.durable_functions as df  # noqa: E402
import azure.functions as func  # noqa: E402

from devhost.app_loader import index_functions  # noqa: E402
from devhost.durable.engine import DurableEngine  # noqa: E402
from devhost.durable.store import TaskHubStore  # noqa: E402
from devhost.host_config import HostConfig  # noqa: E402

TARGETS = {"sequential": 250, "fan-out": 1000}

bench_app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@bench_app.activity_trigger(input_name="value")
def noop(value):
    return value


@bench_app.orchestration_trigger(context_name="context")
def sequential(context: df.DurableOrchestrationContext):
    n = context.get_input()
    for i in range(n):
        yield context.call_activity("noop", i)
    return n


@bench_app.orchestration_trigger(context_name="context")
def fan_out(context: df.DurableOrchestrationContext):
    n = context.get_input()
    results = yield context.task_all([context.call_activity("noop", i) for i in range(n)])
    return len(results)


logging.basicConfig(level=logging.ERROR)  # keep the SDK's one-off notices out of the table
BENCH_INDEX = index_functions(bench_app)  # get_functions() may only run once per app


async def run_engine(orchestrator: str, n: int, workers: int, full_replay: bool = False) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        store = TaskHubStore(Path(tmp) / "bench.sqlite")
        engine = DurableEngine(BENCH_INDEX, store, max_concurrent_activities=workers,
                               full_replay=full_replay)
        await engine.start()
        try:
            started = time.perf_counter()
            instance = engine.start_new(orchestrator, None, str(n))
            while engine.lookup(instance)["status"] not in ("Completed", "Failed"):
                await asyncio.sleep(0.001)
            elapsed = time.perf_counter() - started
            row = engine.lookup(instance)
            if row["status"] != "Completed" or row["output"] != str(n):
                raise RuntimeError(f"{orchestrator} ended {row['status']}: {row['output']}")
            return elapsed
        finally:
            engine.stop()
            store.close()


async def floor_sequential(n: int, workers: int) -> float:
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(workers) as pool:
        started = time.perf_counter()
        for i in range(n):
            await loop.run_in_executor(pool, noop, i)
        return time.perf_counter() - started


async def floor_fan_out(n: int, workers: int) -> float:
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(workers) as pool:
        started = time.perf_counter()
        await asyncio.gather(*(loop.run_in_executor(pool, noop, i) for i in range(n)))
        return time.perf_counter() - started


def best_of(repeat: int, make) -> float:
    return min(asyncio.run(make()) for _ in range(repeat))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequential", type=int, default=500)
    parser.add_argument("--fan-out", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="cProfile one engine run of each scenario")
    parser.add_argument("--full-replay", action="store_true",
                        help="also measure replaying the whole history every episode (MLPIPE_DURABLE_FULL_REPLAY=1)")
    args = parser.parse_args(argv)
    workers = HostConfig().max_concurrent_activities  # the host's default: 10 x cores

    if args.profile:
        for name, n in (("sequential", args.sequential), ("fan_out", args.fan_out)):
            profiler = cProfile.Profile()
            profiler.enable()
            asyncio.run(run_engine(name, n, workers))
            profiler.disable()
            print(f"--- {name} ---")
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
        return 0

    rows = []
    for scenario, orchestrator, n, floor in (
            ("sequential", "sequential", args.sequential, floor_sequential),
            ("fan-out", "fan_out", args.fan_out, floor_fan_out)):
        engine_s = best_of(args.repeat, lambda: run_engine(orchestrator, n, workers))
        floor_s = best_of(args.repeat, lambda: floor(n, workers))
        rows.append((scenario, n, n / engine_s, n / floor_s, TARGETS[scenario]))
        if args.full_replay:
            replay_s = best_of(1, lambda: run_engine(orchestrator, n, workers, full_replay=True))
            rows.append((scenario + " (full replay)", n, n / replay_s, n / floor_s, TARGETS[scenario]))

    print(f"Durable engine, no-op activities (best of {args.repeat}; {os.cpu_count()} cores; "
          f"{workers} activity threads; Python {sys.version.split()[0]})\n")
    print("| scenario | activities | engine (activities/s) | raw floor: no-op via thread pool (activities/s) "
          "| engine / floor | target | met |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for scenario, n, engine_rate, floor_rate, target in rows:
        print(f"| {scenario} | {n} | {engine_rate:,.0f} | {floor_rate:,.0f} | {engine_rate / floor_rate:.2f} "
              f"| >= {target:,} | {'yes' if engine_rate >= target else 'NO'} |")
    return 0 if all(r[2] >= r[4] for r in rows if "full replay" not in r[0]) else 1


if __name__ == "__main__":
    sys.exit(main())
