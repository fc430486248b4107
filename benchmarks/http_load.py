"""HTTP throughput of the local host: submissions/s and run-status GETs/s, with latency percentiles.

    .venv/bin/python benchmarks/http_load.py [--submissions 400] [--gets 2000] [--concurrency 16]

Status GETs read a finished 10-step run (measured first, on a quiet host). Submissions go to a
published one-step pipeline that already ran once, so each submitted run starts its orchestration
and finishes by reuse: what is measured is accepting submissions, not executing steps. While
submissions come in a burst the host holds the new runs back (up to 10 s) and runs them after it,
so the benchmark also reports how long after the last submission every submitted run had finished
("drain"), and the load average, since the machine may be shared. Requests are bounded in count
and go to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

import aiohttp
from common import BENCH_KEY, local_stack, machine, timed_run
from pipeline_overhead import chain, publish

from shared.statuses import RunStatus


async def hammer(url: str, method: str, count: int, concurrency: int, body: dict | None = None,
                 run_ids: list[str] | None = None) -> list[float]:
    """Send `count` requests from `concurrency` clients; latencies in seconds. With `run_ids`, the
    Id of each answer is collected there."""
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
                if run_ids is not None:
                    run_ids.append((await response.json())["Id"])
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


def wait_until_finished(client, run_ids: list[str], timeout: float = 600) -> None:
    """Every run in `run_ids` ended (each polled without its steps, as pollers do)."""
    deadline = time.monotonic() + timeout
    for run_id in run_ids:
        while not RunStatus(client.get_run(run_id, include_steps=False)["Status"]).is_terminal:
            if time.monotonic() > deadline:
                raise RuntimeError(f"run {run_id} did not end within {timeout} s")
            time.sleep(0.05)


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of these processes so far (Linux /proc; 0 where unreadable)."""
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            pass
    return total


def azurite_pids(env: dict) -> list[int]:
    """The Azurite (node) serving this stack's blob port, found in /proc by its command line."""
    port = env["AzureWebJobsStorage"].split("BlobEndpoint=http://127.0.0.1:")[1].split("/")[0]
    found = []
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else []:
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"node") and f"--blobPort\0{port}".encode() in b"\0".join(argv):
            found.append(int(entry.name))
    return found


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--submissions", type=int, default=400)
    parser.add_argument("--gets", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as scratch, local_stack() as (client, env, host):
        status_run = timed_run(client, publish(client, Path(scratch) / "status", chain(10)))[1]
        get_url = f"{host.url}/api/runs/{status_run['Id']}"
        started = time.perf_counter()
        latencies = asyncio.run(hammer(get_url, "GET", args.gets, args.concurrency))
        rows.append(summary("GET /api/runs/{id} (10 steps)", latencies, time.perf_counter() - started))
        one_step = publish(client, Path(scratch) / "one", chain(1))
        timed_run(client, one_step)  # from now on its step is reused
        submit_url = f"{host.url}/api/pipelines/{one_step}/submit"
        run_ids: list[str] = []
        load_before = load_average()
        processes = {"host": [host.process.pid], "Azurite": azurite_pids(env)}
        cpu_before = {name: cpu_seconds(pids) for name, pids in processes.items()}
        started = time.perf_counter()
        latencies = asyncio.run(hammer(submit_url, "POST", args.submissions, args.concurrency,
                                       {"ExperimentName": "load"}, run_ids))
        submitted = time.perf_counter()
        cpu_used = {name: cpu_seconds(pids) - cpu_before[name] for name, pids in processes.items()}
        rows.append(summary("POST .../submit", latencies, submitted - started))
        load_after = load_average()
        wait_until_finished(client, run_ids)
        drained = time.perf_counter() - submitted
    print(f"machine: {machine()}; concurrency {args.concurrency}; "
          f"load average before/after the submissions: {load_before} / {load_after}")
    print("CPU per submission while submitting (less sensitive than throughput to other load on the machine): "
          + ", ".join(f"{name} {seconds / len(run_ids) * 1000:.1f} ms" for name, seconds in cpu_used.items()))
    print(f"all {len(run_ids)} submitted runs finished {drained:.1f} s after the last submission "
          f"({len(run_ids) / (submitted - started + drained):.0f} runs/s from first submission to last finish)")
    print("| request | count | throughput | p50 | p99 |")
    print("|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
