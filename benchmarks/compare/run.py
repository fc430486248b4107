"""Issue 4's comparison: the same no-op DAGs in mlpipe, Prefect 3 and Dagster, side by side in one run.

    bash benchmarks/compare/setup.sh                 # once: builds .bench-venv/ (Prefect, Dagster)
    .venv/bin/python benchmarks/compare/run.py [--chain 50] [--fanout 100] [--rounds 1] [--default-logging]
                                               [--warm-up step|dags] [--dagster-multiprocess] [--json PATH]

mlpipe runs exactly as benchmarks/pipeline_overhead.py does (private Azurite + local host, HTTP
submit to Finished, each step an empty script with its own argument); its stack is then shut down
and prefect_dags.py and dagster_dags.py run one after the other with .bench-venv's interpreter
(their steps run `python -c pass`; both are quiet, at WARNING, unless --default-logging).
Each tool's spawn floor is measured in its own process, with the interpreter its steps use, just
before and just after the chain (the floor is the mean of the two); the per-step overhead is the
chain's time per step less that floor. With --rounds K every tool is measured K times, the order
rotated each round (the machine's load drifts), and the table gives medians with each round's
per-step overhead in brackets. Every tool first runs a one-step warm-up, not counted; with
`--warm-up dags` each first runs the chain and the fan-out once (unmeasured; for mlpipe with other
arguments, so nothing measured is reused), so the timings are of a tool that has run such DAGs
before (warmed caches, JITs and pools), as a host that stays up is, then waits SETTLE_SECONDS (3 s)
for what the warm-up left in the background. Prints one markdown table;
--json PATH also writes the raw figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = HERE.parent
REPO_ROOT = BENCHMARKS.parent
BENCH_PYTHON = REPO_ROOT / ".bench-venv" / "bin" / "python"


def require_bench_venv() -> None:
    if not BENCH_PYTHON.exists():
        sys.exit(f"error: {BENCH_PYTHON.relative_to(REPO_ROOT)} is missing: Prefect and Dagster live in a separate "
                 f"benchmark environment. Create it with\n    bash benchmarks/compare/setup.sh\nthen run this again.")
    probe = subprocess.run([str(BENCH_PYTHON), "-c", "import prefect, dagster"], check=False,
                           capture_output=True, text=True)
    if probe.returncode:
        sys.exit(f"error: .bench-venv cannot import prefect and dagster ({probe.stderr.strip().splitlines()[-1]}); "
                 f"rebuild it with\n    rm -rf .bench-venv && bash benchmarks/compare/setup.sh")


def run_mlpipe(chain_n: int, fanout_m: int, warm_up_dags: bool) -> dict:
    sys.path.insert(0, str(BENCHMARKS))
    from common import local_stack, spawn_floor, timed_run
    from pipeline_overhead import chain, fan_out, noop_step, publish

    sys.path.insert(0, str(HERE))
    from noop_step import SETTLE_SECONDS

    with tempfile.TemporaryDirectory() as scratch, local_stack() as (client, _env, _host):
        scratch = Path(scratch)
        # A one-step warm-up (its own step name, so nothing below is reused), as the others get.
        warm_id = publish(client, scratch / "warm", {"name": "warmup", "steps": [noop_step("warm", [])]})
        warm_up_seconds, warm_run = timed_run(client, warm_id)
        assert warm_run["Status"] == "Finished", warm_run["Error"]
        if warm_up_dags:  # the same DAGs with other arguments: nothing measured below is reused
            for name, definition in (("warm-chain", chain(chain_n, "warm")), ("warm-fan", fan_out(fanout_m))):
                for step in definition["steps"]:
                    step["arguments"] = [f"{step['name']}-warm"]
                seconds, warm_run = timed_run(client, publish(client, scratch / name, definition))
                assert warm_run["Status"] == "Finished", warm_run["Error"]
                warm_up_seconds += seconds
            time.sleep(SETTLE_SECONDS)
        chain_id = publish(client, scratch / "chain", chain(chain_n))
        fan_id = publish(client, scratch / "fan", fan_out(fanout_m))
        noop = scratch / "chain" / "src" / "noop.py"
        floor_before = spawn_floor(noop, 20)
        chain_seconds, chain_run = timed_run(client, chain_id)
        assert chain_run["Status"] == "Finished", chain_run["Error"]
        floor_after = spawn_floor(noop, 20)
        fan_seconds, fan_run = timed_run(client, fan_id)
        assert fan_run["Status"] == "Finished", fan_run["Error"]
        assert not any(step["Reused"] for step in chain_run["Steps"] + fan_run["Steps"])
    return {"tool": "mlpipe (this repo)", "python": sys.version.split()[0],
            "floor": (floor_before + floor_after) / 2, "floor_before": floor_before, "floor_after": floor_after,
            "chain": chain_seconds, "fanout": fan_seconds, "warm_up": warm_up_seconds,
            "chain_n": chain_n, "fanout_m": fanout_m,
            "config": "local host + Azurite, local compute; HTTP submit to Finished as benchmarks/common.py's "
                      "timed_run waits for it (the long poll of PipelineClient.wait_for_run); "
                      "steps run `python noop.py <step name>` with the project venv"}


def run_other(script: str, chain_n: int, fanout_m: int, extra: list[str]) -> dict:
    command = [str(BENCH_PYTHON), str(HERE / script), "--chain", str(chain_n), "--fanout", str(fanout_m), *extra]
    done = subprocess.run(command, check=False, capture_output=True, text=True, cwd=REPO_ROOT, timeout=3600)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        sys.stderr.write(done.stdout[-4000:] + done.stderr[-4000:])
        sys.exit(f"error: {' '.join(command)} exited {done.returncode}")
    return json.loads(lines[-1])


def load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def variants(result: dict) -> dict[str, dict]:
    """A tool's table rows from one round: its main timing, plus the variants some tools report."""
    rows = {result["tool"]: result}
    if "chain_recorded" in result:
        rows[f"{result['tool']}, until its API shows every task run Completed"] = {
            **result, "chain": result["chain_recorded"], "fanout": result["fanout_recorded"]}
    if "chain_persistent" in result:
        rows[f"{result['tool']}, same executor on a persistent instance (SQLite run and event storage)"] = {
            **result, "chain": result["chain_persistent"], "fanout": result["fanout_persistent"],
            "floor": result["floor_persistent"]}
    if "fanout_multiprocess" in result:
        rows[f"{result['tool']}, multiprocess executor (fan-out only)"] = {
            **result, "chain": None, "fanout": result["fanout_multiprocess"]}
    return rows


def overhead(row: dict) -> float:
    """Chain time per step less the spawn floor measured in the same process."""
    return row["chain"] / row["chain_n"] - row["floor"]


def table(rounds: list[list[dict]]) -> str:
    """One row per tool (and variant): medians over the rounds, every round's per-step overhead listed."""
    collected: dict[str, list[dict]] = {}
    for results in rounds:
        for result in results:
            for label, row in variants(result).items():
                collected.setdefault(label, []).append(row)
    first = rounds[0][0]
    mine_label = first["tool"]
    mine = statistics.median(overhead(row) for row in collected[mine_label])
    lines = ["| tool | spawn floor | chain of {n}: total | chain: per-step overhead beyond spawn (each round) | "
             "fan-out of {m} (+root, +join): total | fan-out ÷ {s} serial spawns | "
             "mlpipe's per-step overhead ÷ this tool's |".format(n=first["chain_n"], m=first["fanout_m"],
                                                                  s=first["fanout_m"] + 2),
             "|---|---|---|---|---|---|---|"]
    for label, rows in collected.items():
        floor = statistics.median(row["floor"] for row in rows)
        fanout = statistics.median(row["fanout"] for row in rows)
        fanout_ratio = statistics.median(row["fanout"] / ((row["fanout_m"] + 2) * row["floor"]) for row in rows)
        if rows[0]["chain"] is None:
            chain_cells, ratio = "- | -", "-"
        else:
            each = [overhead(row) for row in rows]
            median = statistics.median(each)
            listed = f" ({', '.join(f'{value * 1000:.0f}' for value in each)})" if len(each) > 1 else ""
            chain_cells = (f"{statistics.median(row['chain'] for row in rows):.2f} s "
                           f"| {median * 1000:.1f} ms{listed}")
            ratio = "-" if label == mine_label else f"{mine / median:.2f}"
        lines.append(f"| {label} | {floor * 1000:.1f} ms | {chain_cells} | {fanout:.2f} s | {fanout_ratio:.2f} "
                     f"| {ratio} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chain", type=int, default=50)
    parser.add_argument("--fanout", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=1,
                        help="measure every tool this many times, rotating their order each round; "
                             "the table gives medians")
    parser.add_argument("--dagster-multiprocess", action="store_true",
                        help="also run Dagster's fan-out with the multiprocess executor, in the first round "
                             "only (slow: ~2 s per op)")
    parser.add_argument("--default-logging", action="store_true",
                        help="leave Prefect (INFO) and Dagster (DEBUG console) at their default log levels")
    parser.add_argument("--warm-up", choices=("step", "dags"), default="step",
                        help="what every tool runs first, unmeasured: a one-step DAG (default), or the "
                             "chain and the fan-out themselves")
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    args = parser.parse_args()
    require_bench_venv()

    logging = ["--default-logging"] if args.default_logging else []
    logging += ["--warm-up", args.warm_up]
    tools = [lambda r: run_mlpipe(args.chain, args.fanout, args.warm_up == "dags"),
             lambda r: run_other("prefect_dags.py", args.chain, args.fanout, logging),
             lambda r: run_other("dagster_dags.py", args.chain, args.fanout,
                                 logging + (["--multiprocess"] if args.dagster_multiprocess and r == 0 else []))]
    started, load_before = time.time(), load()
    rounds = []
    for r in range(args.rounds):
        order = [(i + r) % len(tools) for i in range(len(tools))]  # each tool goes first in turn
        results: list[dict | None] = [None] * len(tools)
        for i in order:
            results[i] = tools[i](r)
        rounds.append(results)

    from common import machine
    print(f"machine: {machine()}; load average (1/5/15 min) before: {load_before}, after: {load()}; "
          f"{args.rounds} round(s), took {time.time() - started:.0f} s")
    print()
    print(table(rounds))
    print()
    for result in rounds[0]:
        print(f"- {result['tool']} (Python {result['python']}): {result['config']}; warm-up "
              f"({'the chain and the fan-out' if args.warm_up == 'dags' else 'a one-step DAG'}) "
              f"{result['warm_up']:.2f} s, not counted")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"load_before": load_before, "load_after": load(), "rounds": rounds},
                                        indent=2))


if __name__ == "__main__":
    main()
