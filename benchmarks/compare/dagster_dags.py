"""No-op chain and fan-out/fan-in DAGs in Dagster, executed in-process; prints one JSON line.

    .bench-venv/bin/python benchmarks/compare/dagster_dags.py [--chain 50] [--fanout 100] [--multiprocess]

Each step is an op (one definition, aliased per step, ordered by Nothing inputs) run by
`JobDefinition.execute_in_process()`: an ephemeral in-memory instance and the in-process executor,
which runs ops one at a time, so the fan-out's workers run sequentially too; then again on a
persistent instance (SQLite run and event storage in a throw-away DAGSTER_HOME, what a Dagster
deployment records). The console logger is
set to WARNING (quiet; the default, kept with --default-logging, prints every event at DEBUG).
With --multiprocess the fan-out is also run with Dagster's multiprocess executor (default
max_concurrent = CPU count) via execute_job() on a throw-away filesystem instance; every op
then runs in a fresh Python process that imports Dagster and the job, so it is not cheap.
A one-op warm-up job runs first so one-time imports and set-up are not in the timings (with
--warm-up dags: the chain and the fan-out themselves, on each instance).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import dagster
from dagster import In, Nothing, job, op
from noop_step import SETTLE_SECONDS, spawn, spawn_floor, timed


@op(ins={"after": In(Nothing)})
def step(context) -> None:
    spawn()


def chain_job(n: int):
    @job(name=f"chain{n}")
    def chain():
        previous = None
        for i in range(n):
            previous = step.alias(f"s{i}")(after=previous) if previous else step.alias(f"s{i}")()
    return chain


def fan_out_job(m: int, executor_def=None):
    @job(name=f"fanout{m}", executor_def=executor_def)
    def fan_out():
        root = step.alias("root")()
        step.alias("join")(after=[step.alias(f"w{i}")(after=root) for i in range(m)])
    return fan_out


# Quiet, like the Prefect side: the default console logger prints every event at DEBUG.
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def run_in_process(job_def, instance=None) -> None:
    """The in-process executor; on `instance`, or on an ephemeral in-memory one when None."""
    result = job_def.execute_in_process(run_config=QUIET, instance=instance)
    assert result.success


def persistent_timings(chain, fan_out, floor_before: float, warm_up_dags: bool = False) -> dict:
    """The same jobs, in-process executor, on a persistent instance: runs and every event stored in
    SQLite under a throw-away DAGSTER_HOME, as `dagster job execute` does with DAGSTER_HOME set and as
    the UI needs to show them. The durable comparison: mlpipe stores its runs and steps too."""
    from dagster import DagsterInstance
    with tempfile.TemporaryDirectory(prefix="dagster-home-") as home, \
            DagsterInstance.local_temp(home, overrides={"telemetry": {"enabled": False}}) as instance:
        run_in_process(chain_job(1), instance)  # warm-up: creates the SQLite storage
        for job_def in (chain, fan_out) if warm_up_dags else ():
            run_in_process(job_def, instance)
        if warm_up_dags:
            time.sleep(SETTLE_SECONDS)
        chain_seconds = timed(lambda job_def: run_in_process(job_def, instance), chain)
        floor_after = spawn_floor(20)
        fan_seconds = timed(lambda job_def: run_in_process(job_def, instance), fan_out)
    return {"chain_persistent": chain_seconds, "fanout_persistent": fan_seconds,
            "floor_persistent": (floor_before + floor_after) / 2}


def run_multiprocess(m: int) -> None:
    from dagster import DagsterInstance, execute_job, reconstructable
    os.environ["BENCH_FANOUT_M"] = str(m)
    with tempfile.TemporaryDirectory(prefix="dagster-bench-") as home, \
            DagsterInstance.local_temp(home, overrides={"telemetry": {"enabled": False}}) as instance, \
            execute_job(reconstructable(_multiprocess_job), instance=instance, run_config=QUIET) as result:
        assert result.success


def _multiprocess_job():
    # The multiprocess executor reloads the job in each op's process, so it is built by a
    # module-level function (reconstructable); M comes from the environment there.
    m = int(os.environ["BENCH_FANOUT_M"])
    return fan_out_job(m, executor_def=dagster.multiprocess_executor)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chain", type=int, default=50)
    parser.add_argument("--fanout", type=int, default=100)
    parser.add_argument("--multiprocess", action="store_true")
    parser.add_argument("--default-logging", action="store_true", help="keep the DEBUG console logger")
    parser.add_argument("--warm-up", choices=("step", "dags"), default="step")
    args = parser.parse_args()
    if args.default_logging:
        QUIET.clear()
    chain, fan_out = chain_job(args.chain), fan_out_job(args.fanout)
    started = time.perf_counter()
    run_in_process(chain_job(1))
    for job_def in (chain, fan_out) if args.warm_up == "dags" else ():
        run_in_process(job_def)
    warm_up_seconds = time.perf_counter() - started
    if args.warm_up == "dags":
        time.sleep(SETTLE_SECONDS)
    floor_before = spawn_floor(20)
    chain_seconds = timed(run_in_process, chain)
    floor_after = spawn_floor(20)
    floor = (floor_before + floor_after) / 2  # the machine's load drifts: bracket the chain
    fan_seconds = timed(run_in_process, fan_out)
    persistent = persistent_timings(chain, fan_out, floor_after, args.warm_up == "dags")
    report = {"tool": f"Dagster {dagster.__version__}", "python": sys.version.split()[0],
              "floor": floor, "floor_before": floor_before, "floor_after": floor_after,
              "chain": chain_seconds, "fanout": fan_seconds, "warm_up": warm_up_seconds,
              "chain_n": args.chain, "fanout_m": args.fanout,
              "config": "execute_in_process (ephemeral instance, in-process executor: ops one at a time, "
                        "so the fan-out is sequential), console log level "
                        f"{'DEBUG (default)' if args.default_logging else 'WARNING'}; the persistent-instance "
                        "variant stores runs and events in SQLite under a throw-away DAGSTER_HOME",
              **persistent}
    if args.multiprocess:
        report["fanout_multiprocess"] = timed(run_multiprocess, args.fanout)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
