"""No-op chain and fan-out/fan-in DAGs in Prefect 3, run locally; prints one JSON line.

    .bench-venv/bin/python benchmarks/compare/prefect_dags.py [--chain 50] [--fanout 100]

Prefect with default settings and no server of its own: PREFECT_API_URL is unset, so Prefect
starts its ephemeral in-process API (SQLite in a throw-away PREFECT_HOME). Logging at WARNING
(quiet; --default-logging keeps Prefect's INFO, which also ships every
log line to the API). Chain: each task called directly after the previous one (sequential, as a chain is).
Fan-out: root called, then the M workers `.submit()`ted to the default task runner (a thread
pool, unbounded by default) and the join `.submit()`ted with wait_for on all of them.
A one-task warm-up flow runs first so the ephemeral API's start-up is not in the timings (with
--warm-up dags: the chain and the fan-out flows themselves).

Prefect 3 reports task-run states to its API as events that the server records asynchronously, so
a flow call can return before the API shows its task runs as Completed. Two times are given per DAG:
until the flow call returns ("chain", "fanout"), and until the API shows the flow run and all its
task runs Completed ("chain_recorded", "fanout_recorded"), polled every 50 ms as mlpipe's benchmark
polls its runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

_home = tempfile.mkdtemp(prefix="prefect-bench-")
os.environ.pop("PREFECT_API_URL", None)
os.environ.update({"PREFECT_HOME": _home, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1",
                   # The ephemeral API's start-up (not timed) can take over its default 20 s on a loaded machine.
                   "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180"})
# Settings are read at import, so this flag is looked at before argparse runs.
DEFAULT_LOGGING = "--default-logging" in sys.argv
if not DEFAULT_LOGGING:
    os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"

import prefect  # noqa: E402 - Prefect reads its settings at import
from noop_step import SETTLE_SECONDS, spawn, spawn_floor  # noqa: E402 - Prefect reads its settings at import
from prefect import flow, task  # noqa: E402 - Prefect reads its settings at import
from prefect.client.orchestration import get_client  # noqa: E402 - Prefect reads its settings at import
from prefect.client.schemas.filters import (  # noqa: E402 - Prefect reads its settings at import
    TaskRunFilter,
    TaskRunFilterFlowRunId,
    TaskRunFilterState,
    TaskRunFilterStateType,
)
from prefect.client.schemas.objects import StateType  # noqa: E402
from prefect.client.schemas.sorting import TaskRunSort  # noqa: E402


@task
def step(name: str) -> str:
    # `name` makes every task run's inputs its own, as mlpipe's per-step argument does.
    spawn()
    return name


@flow
def warm_up() -> None:
    step("warm")


@flow
def chain(n: int) -> None:
    for i in range(n):
        step(f"s{i}")


@flow
def fan_out(m: int) -> None:
    step("root")
    workers = [step.submit(f"w{i}") for i in range(m)]
    step.submit("join", wait_for=workers).result()


def timed_flow(flow_fn, size: int, task_runs: int) -> tuple[float, float]:
    """Seconds until the flow call returns, and until the API has recorded it all Completed."""
    started = time.perf_counter()
    state = flow_fn(size, return_state=True)
    returned = time.perf_counter() - started
    assert state.is_completed(), state
    flow_run_id = state.state_details.flow_run_id
    completed = TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=[flow_run_id]),
                              state=TaskRunFilterState(type=TaskRunFilterStateType(any_=[StateType.COMPLETED])))
    with get_client(sync_client=True) as client:
        while True:
            if client.read_flow_run(flow_run_id).state_type == StateType.COMPLETED and \
                    len(client.read_task_runs(task_run_filter=completed, sort=TaskRunSort.ID_DESC,
                                              limit=task_runs + 10)) >= task_runs:
                return returned, time.perf_counter() - started
            if time.perf_counter() - started > returned + 600:
                raise TimeoutError(f"the API never showed {task_runs} task runs Completed")
            time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chain", type=int, default=50)
    parser.add_argument("--fanout", type=int, default=100)
    parser.add_argument("--default-logging", action="store_true", help="keep Prefect's INFO logging")
    parser.add_argument("--warm-up", choices=("step", "dags"), default="step")
    args = parser.parse_args()
    started = time.perf_counter()
    warm_up()
    if args.warm_up == "dags":
        chain(args.chain)
        fan_out(args.fanout)
    warm_up_seconds = time.perf_counter() - started
    if args.warm_up == "dags":
        time.sleep(SETTLE_SECONDS)
    floor_before = spawn_floor(20)
    chain_seconds, chain_recorded = timed_flow(chain, args.chain, args.chain)
    floor_after = spawn_floor(20)
    floor = (floor_before + floor_after) / 2  # the machine's load drifts: bracket the chain
    fan_seconds, fan_recorded = timed_flow(fan_out, args.fanout, args.fanout + 2)
    print(json.dumps({"tool": f"Prefect {prefect.__version__}", "python": sys.version.split()[0],
                      "floor": floor, "floor_before": floor_before, "floor_after": floor_after,
                      "chain": chain_seconds, "fanout": fan_seconds,
                      "chain_recorded": chain_recorded, "fanout_recorded": fan_recorded,
                      "warm_up": warm_up_seconds, "chain_n": args.chain, "fanout_m": args.fanout,
                      "config": "ephemeral API (PREFECT_API_URL unset), direct task calls for the chain, "
                                "default ThreadPoolTaskRunner .submit() for the fan-out, log level "
                                f"{'INFO (default)' if DEFAULT_LOGGING else 'WARNING'}"}))


if __name__ == "__main__":
    main()
