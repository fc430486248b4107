"""Per-step overhead of mlpipe on local compute, from HTTP submit to Finished.

    .venv/bin/python benchmarks/pipeline_overhead.py [--chain 50] [--fanout 100] [--repeat 1]

Each step runs an empty Python script (the cost of `python -c pass`); the raw floor is that
spawn measured in the same run. Reports: chain of N (per-step overhead beyond the spawn),
fan-out/fan-in of N (wall time to Finished), and the all-reused resubmission of the chain.
With --repeat R, R fresh chains (other arguments, nothing reused) run one after the other in the
same host and the median is reported with the range: the machine's speed drifts from minute to minute.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import yaml
from common import local_stack, machine, machine_busy_seconds, spawn_floor, timed_run

from shared.fingerprint import SourceHasher
from shared.packaging import build_package
from shared.spec import load_definition


def noop_step(name: str, after: list[str]) -> dict:
    # The argument makes every step's fingerprint its own (identical steps would be reused).
    return {"name": name, "source_directory": "src", "script_name": "noop.py", "arguments": [name],
            "run_after": after}


def chain(n: int, variant: str = "") -> dict:
    """n no-op steps in a row; a `variant` gives every step other arguments (a fresh chain, nothing reused)."""
    steps = [noop_step(f"s{i}", [f"s{i-1}"] if i else []) for i in range(n)]
    for step in steps if variant else []:
        step["arguments"] = [f"{step['name']}-{variant}"]
    return {"name": f"chain{n}{variant}", "steps": steps}


def fan_out(n: int) -> dict:
    workers = [noop_step(f"w{i}", ["root"]) for i in range(n)]
    return {"name": f"fanout{n}", "steps": [noop_step("root", []), *workers,
                                            noop_step("join", [w["name"] for w in workers])]}


def publish(client, folder: Path, definition: dict) -> str:
    (folder / "src").mkdir(parents=True, exist_ok=True)
    (folder / "src" / "noop.py").write_text("")
    path = folder / "pipeline.yaml"
    path.write_text(yaml.safe_dump(definition))
    parsed, base = load_definition(path)
    return client.publish_package(build_package(path, parsed, base, SourceHasher(None)))["Id"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chain", type=int, default=50)
    parser.add_argument("--fanout", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=1,
                        help="run that many fresh chains in the same host; the median is reported, with the range")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch, local_stack() as (client, _env, _host):
        scratch = Path(scratch)
        chain_id = publish(client, scratch / "chain", chain(args.chain))
        more_chains = [publish(client, scratch / f"chain{i}", chain(args.chain, f"r{i}"))
                       for i in range(1, args.repeat)]
        fan_id = publish(client, scratch / "fan", fan_out(args.fanout))
        floor = spawn_floor(scratch / "chain" / "src" / "noop.py", 20)

        chain_times, busy = [], 0.0
        for pipeline_id in [chain_id, *more_chains]:
            busy_before = machine_busy_seconds()
            seconds, chain_run = timed_run(client, pipeline_id)
            busy += machine_busy_seconds() - busy_before
            assert chain_run["Status"] == "Finished", chain_run["Error"]
            assert not any(step["Reused"] for step in chain_run["Steps"])
            chain_times.append(seconds)
        chain_seconds = statistics.median(chain_times)
        fan_seconds, fan_run = timed_run(client, fan_id)
        assert fan_run["Status"] == "Finished", fan_run["Error"]
        assert not any(step["Reused"] for step in fan_run["Steps"])
        reused_seconds, reused_run = timed_run(client, chain_id)
        assert all(step["Reused"] for step in reused_run["Steps"])

    per_step = chain_seconds / args.chain
    print(f"machine: {machine()}")
    print("| measurement | value | raw floor (same run) |")
    print("|---|---|---|")
    print(f"| spawn `python noop.py` | {floor * 1000:.1f} ms | - |")
    print(f"| chain of {args.chain}, submit to Finished | {chain_seconds:.2f} s ({per_step * 1000:.1f} ms/step) "
          f"| {args.chain} x spawn = {args.chain * floor:.2f} s |")
    lowest, highest = ((seconds / args.chain - floor) * 1000 for seconds in (min(chain_times), max(chain_times)))
    spread = "" if len(chain_times) == 1 else \
        f" (median of {len(chain_times)} fresh chains; {lowest:.1f}–{highest:.1f} ms)"
    print(f"| chain of {args.chain}: overhead per step beyond the spawn | {(per_step - floor) * 1000:.1f} ms"
          f"{spread} | - |")
    print(f"| chain of {args.chain}: the machine's CPU per step (all processes, all chains) | "
          f"{busy / (args.chain * len(chain_times)) * 1000:.1f} ms, {busy / sum(chain_times):.2f} cores busy | - |")
    print(f"| fan-out/fan-in of {args.fanout} (+root, +join), submit to Finished | {fan_seconds:.2f} s "
          f"| {args.fanout + 2} spawns serial = {(args.fanout + 2) * floor:.2f} s |")
    print(f"| resubmit chain of {args.chain}, all Reused, submit to Finished | {reused_seconds:.2f} s | - |")


if __name__ == "__main__":
    main()
