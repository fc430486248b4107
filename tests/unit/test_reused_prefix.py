"""Which steps a run reuses at plan time (shared/run_plan.reused_prefix), and how many reuse
lookups that costs: the lookups are storage requests, so a fresh pipeline should cost a handful."""

from __future__ import annotations

import threading

from shared.reuse import ReuseRecord
from shared.run_plan import reused_prefix
from shared.spec import parse_definition


def step(name: str, after: list[str]) -> dict:
    return {"name": name, "source_directory": ".", "script_name": "noop.py", "arguments": [name],
            "run_after": after}


def chain(n: int):
    return parse_definition({"name": "chain", "steps": [step(f"s{i}", [f"s{i - 1}"] if i else []) for i in range(n)]})


def fan_out(m: int):
    workers = [step(f"w{i}", ["root"]) for i in range(m)]
    return parse_definition({"name": "fan", "steps": [step("root", []), *workers,
                                                       step("join", [w["name"] for w in workers])]})


class RecordedIndex:
    """A reuse index holding records for some fingerprints; counts lookups and their waves."""

    def __init__(self, reused: set[str], producer_run: str = "earlier-run"):
        self.reused, self.producer_run = reused, producer_run
        self.lookups: list[str] = []
        self._lock = threading.Lock()

    def lookup(self, fingerprint: str) -> ReuseRecord | None:
        with self._lock:
            self.lookups.append(fingerprint)
        if fingerprint not in self.reused:
            return None
        return ReuseRecord(fingerprint=fingerprint, run_id=self.producer_run, step=fingerprint.removeprefix("fp-"),
                           pipeline_id=None, outputs={})


def plans_of(definition) -> dict:
    return {name: {"fingerprint": f"fp-{name}"} for name in definition.dependencies()}


def prefix_of(definition, reused_steps: set[str], run_id: str = "this-run", reusable: set[str] | None = None):
    plans = plans_of(definition)
    index = RecordedIndex({f"fp-{name}" for name in reused_steps})
    prefix = reused_prefix(run_id, definition, plans, set(plans) if reusable is None else reusable, index.lookup)
    return prefix, index.lookups


def test_a_fresh_chain_costs_only_its_first_wave_of_lookups():
    prefix, lookups = prefix_of(chain(1000), reused_steps=set())
    assert prefix == {}
    assert len(lookups) == 4


def test_a_fresh_fan_out_costs_only_its_first_wave_of_lookups():
    prefix, lookups = prefix_of(fan_out(100), reused_steps=set())
    assert prefix == {}
    assert len(lookups) == 4


def test_an_all_reused_chain_is_reused_whole_with_one_lookup_per_step():
    definition = chain(300)
    prefix, lookups = prefix_of(definition, reused_steps=set(definition.dependencies()))
    assert set(prefix) == set(definition.dependencies())
    assert sorted(lookups) == sorted(f"fp-{name}" for name in definition.dependencies())


def test_the_prefix_stops_at_the_first_step_that_is_not_reused():
    definition = chain(100)
    reused = {f"s{i}" for i in range(100) if i != 37}
    prefix, lookups = prefix_of(definition, reused_steps=reused)
    assert set(prefix) == {f"s{i}" for i in range(37)}
    assert len(lookups) < 37 + 64  # no lookups far beyond the break


def test_a_fan_out_with_one_worker_not_reused_keeps_the_others_but_not_the_join():
    definition = fan_out(50)
    reused = {"root", "join", *(f"w{i}" for i in range(50) if i != 20)}
    prefix, _ = prefix_of(definition, reused_steps=reused)
    assert set(prefix) == reused - {"join"}


def test_a_record_made_by_this_very_run_is_not_reuse():
    definition = chain(3)
    plans = plans_of(definition)
    index = RecordedIndex({"fp-s0", "fp-s1", "fp-s2"}, producer_run="this-run")
    assert reused_prefix("this-run", definition, plans, set(plans), index.lookup) == {}


def test_steps_that_may_not_be_reused_are_not_looked_up():
    definition = chain(10)
    prefix, lookups = prefix_of(definition, reused_steps=set(definition.dependencies()), reusable={"s0", "s1"})
    assert set(prefix) == {"s0", "s1"}
    assert set(lookups) == {"fp-s0", "fp-s1"}
