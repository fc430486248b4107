"""HTTP throughput of the local host: submissions/s and run-status GETs/s, with latency percentiles.

    .venv/bin/python benchmarks/http_load.py [--submissions 400] [--gets 2000] [--concurrency 16]

Status GETs read a finished 10-step run (measured first, on a quiet host). Submissions go to a
published one-step pipeline that already ran once, so each submitted run starts its orchestration
and finishes by reuse: what is measured is accepting submissions, not executing steps. Requests
are bounded in count and go to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import aiohttp

from common import BENCH_KEY, local_stack, machine, timed_run
from pipeline_overhead import chain, publish


async def hammer(url: str, method: str, count: int, concurrency: int, body: dict | None = None) -> list[float]:
    latencies: list[float] = []
    headers = {"x-functions-key": BENCH_KEY}
    queue = asyncio.Queue()
    for _ in range(count):
        queue.put_nowait(None)

    async def worker(session: aiohttp.ClientSession) -> None:
        while not queue.empty():
            queue.get_nowait()
            started = time.perf_counter()
            async with session.request(method, url, json=body, headers=headers) as response:
                await response.read()
                if response.status >= 400:
                    raise RuntimeError(f"{method} {url}: {response.status}")
            latencies.append(time.perf_counter() - started)

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return latencies


def summary(label: str, latencies: list[float], seconds: float) -> str:
    ordered = sorted(latencies)
    p50 = ordered[len(ordered) // 2] * 1000
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000
    return f"| {label} | {len(latencies)} | {len(latencies) / seconds:.0f}/s | {p50:.1f} ms | {p99:.1f} ms |"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--submissions", type=int, default=400)
    parser.add_argument("--gets", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as scratch, local_stack() as (client, _env, host):
        status_run = timed_run(client, publish(client, Path(scratch) / "status", chain(10)))[1]
        get_url = f"{host.url}/api/runs/{status_run['Id']}"
        started = time.perf_counter()
        latencies = asyncio.run(hammer(get_url, "GET", args.gets, args.concurrency))
        rows.append(summary("GET /api/runs/{id} (10 steps)", latencies, time.perf_counter() - started))
        one_step = publish(client, Path(scratch) / "one", chain(1))
        timed_run(client, one_step)  # from now on its step is reused
        submit_url = f"{host.url}/api/pipelines/{one_step}/submit"
        started = time.perf_counter()
        latencies = asyncio.run(hammer(submit_url, "POST", args.submissions, args.concurrency,
                                       {"ExperimentName": "load"}))
        rows.append(summary("POST .../submit", latencies, time.perf_counter() - started))
    print(f"machine: {machine()}; concurrency {args.concurrency}")
    print("| request | count | throughput | p50 | p99 |")
    print("|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
