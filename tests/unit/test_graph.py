"""shared/graph.py: DAG, cycles and the ready-set planner."""

from __future__ import annotations

import json

import pytest

from shared.graph import CycleError, PipelineGraph, ReadyPlanner, StepState, find_cycle, topological_order

DIAMOND = {"a": [], "fast": ["a"], "slow": ["a"], "after_fast": ["fast"], "join": ["fast", "slow"]}


def test_topological_order_is_deterministic():
    assert topological_order({"c": ["a"], "b": ["a"], "a": []}) == ["a", "b", "c"]
    assert topological_order(DIAMOND) == ["a", "fast", "after_fast", "slow", "join"]


def test_cycle_reported_in_data_flow_order():
    assert find_cycle({"a": ["c"], "b": ["a"], "c": ["b"]}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": ["a"]}) == ["a", "a"]
    assert find_cycle(DIAMOND) is None
    with pytest.raises(CycleError) as caught:
        topological_order({"x": [], "a": ["b"], "b": ["a"]})
    assert caught.value.cycle == ["a", "b", "a"]
    with pytest.raises(CycleError, match="dependency cycle a -> b -> a"):
        PipelineGraph.from_dependencies({"a": ["b"], "b": ["a"]})


def test_unknown_upstream_rejected():
    with pytest.raises(ValueError, match="unknown step 'ghost'"):
        ReadyPlanner({"a": ["ghost"]})


def test_graph_queries_and_json():
    graph = PipelineGraph.from_dependencies(DIAMOND)
    assert graph.upstream("join") == ["fast", "slow"]
    assert graph.downstream("a") == ["after_fast", "fast", "join", "slow"]
    assert graph.downstream("slow") == ["join"]
    round_tripped = json.loads(json.dumps(graph.to_json()))["steps"]
    assert ReadyPlanner.from_dependencies(round_tripped).states() == ReadyPlanner(DIAMOND).states()
    assert graph.to_json() == {"steps": {k: sorted(v) for k, v in sorted(DIAMOND.items())}}


def test_graph_from_definition_uses_spec_dependencies():
    from shared.spec import parse_definition

    defn = parse_definition(
        {
            "name": "p",
            "steps": [
                {"name": "a", "script_name": "a.py", "outputs": ["o"]},
                {"name": "b", "script_name": "b.py", "inputs": {"x": "a.o"}},
                {"name": "c", "script_name": "c.py", "run_after": ["b"]},
            ],
        }
    )
    assert PipelineGraph.from_definition(defn).topological_order() == ["a", "b", "c"]


def test_slow_branch_does_not_block_fast_branch():
    planner = ReadyPlanner.from_dependencies(DIAMOND)
    assert planner.ready() == ["a"]
    assert planner.ready() == []  # handed out once only
    planner.mark_done("a")
    assert planner.ready() == ["fast", "slow"]
    planner.mark_done("fast")
    assert planner.ready() == ["after_fast"]  # slow is still running
    planner.mark_done("after_fast")
    assert planner.ready() == []
    assert not planner.finished
    planner.mark_done("slow")
    assert planner.ready() == ["join"]
    planner.mark_done("join")
    assert planner.finished and planner.is_finished()
    assert set(planner.states().values()) == {StepState.COMPLETED}


def test_failure_without_continue_skips_downstream_and_cancels_the_rest():
    planner = ReadyPlanner({"a": [], "b": [], "a2": ["a"], "b2": ["b"], "c": []})
    assert planner.ready() == ["a", "b", "c"]
    planner.mark_done("c")
    outcome = planner.mark_failed("a", continue_on_failure=False)
    assert outcome.skipped == ["a2"]
    assert outcome.canceled == ["b2"]  # not downstream of a, but the run is stopping
    assert planner.stopped and not planner.finished
    planner.mark_done("b")  # running steps finish...
    assert planner.ready() == []  # ...but nothing new starts
    assert planner.state("b2") == StepState.CANCELED
    assert planner.finished


def test_failure_cancels_not_started_unrelated_steps():
    planner = ReadyPlanner({"a": [], "b": ["x"], "x": []})
    planner.ready()
    planner.mark_done("x")
    outcome = planner.mark_failed("a")
    assert outcome.to_json() == {"skipped": [], "canceled": ["b"]}
    assert planner.ready() == [] and planner.finished


def test_continue_on_failure_lets_other_branches_run():
    planner = ReadyPlanner(DIAMOND)
    planner.ready()
    planner.mark_done("a")
    planner.ready()
    outcome = planner.mark_failed("slow", continue_on_failure=True)
    assert outcome.skipped == ["join"] and outcome.canceled == []
    planner.mark_done("fast")
    assert planner.ready() == ["after_fast"]
    planner.mark_done("after_fast")
    assert planner.finished
    assert planner.states() == {
        "a": "Completed",
        "after_fast": "Completed",
        "fast": "Completed",
        "join": "Skipped",
        "slow": "Failed",
    }


def test_skipped_steps_are_not_skipped_twice():
    planner = ReadyPlanner({"a": [], "b": [], "c": ["a", "b"], "d": ["c"]})
    planner.ready()
    assert planner.mark_failed("a", continue_on_failure=True).skipped == ["c", "d"]
    assert planner.mark_failed("b", continue_on_failure=True).skipped == []
    assert planner.finished


def test_cancel_stops_not_started_and_waits_for_running():
    planner = ReadyPlanner({"a": [], "b": ["a"], "c": []})
    planner.ready()
    planner.mark_done("c")
    assert planner.cancel() == ["b"]
    assert not planner.finished
    outcome = planner.mark_canceled("a")
    assert outcome.skipped == [] and outcome.canceled == []
    assert planner.finished and planner.state("a") == "Canceled"


def test_invalid_transitions_raise():
    planner = ReadyPlanner({"a": [], "b": ["a"]})
    with pytest.raises(ValueError, match="'a' is NotStarted"):
        planner.mark_done("a")
    planner.ready()
    planner.mark_done("a")
    with pytest.raises(ValueError, match="'a' is Completed"):
        planner.mark_done("a")
    with pytest.raises(KeyError):
        planner.mark_done("ghost")


def test_replay_gives_the_same_sequence():
    def run(deps):
        planner = ReadyPlanner.from_dependencies(deps)
        handed = []
        while not planner.finished:
            batch = planner.ready()
            handed.append(batch)
            for name in batch:
                planner.mark_done(name)
        return handed

    deps = {f"s{i}": [f"s{j}" for j in range(i) if (i * 7 + j) % 5 == 0] for i in range(40)}
    assert run(deps) == run(dict(reversed(list(deps.items()))))


def test_thousand_step_chain_and_fan_out():
    chain = {f"s{i:04d}": ([f"s{i - 1:04d}"] if i else []) for i in range(1000)}
    planner = ReadyPlanner(chain)
    order = []
    while not planner.finished:
        (name,) = planner.ready()
        order.append(name)
        planner.mark_done(name)
    assert order == sorted(chain)

    fan = {"root": [], **{f"leaf{i:04d}": ["root"] for i in range(998)}, "sink": [f"leaf{i:04d}" for i in range(998)]}
    planner = ReadyPlanner(fan)
    assert planner.ready() == ["root"]
    planner.mark_done("root")
    leaves = planner.ready()
    assert len(leaves) == 998
    for leaf in leaves:
        planner.mark_done(leaf)
    assert planner.ready() == ["sink"]

    planner = ReadyPlanner(chain)
    planner.ready()
    assert len(planner.mark_failed("s0000").skipped) == 999


def test_long_chain_cycle_detection_has_no_recursion_limit():
    deps = {f"s{i}": [f"s{i - 1}"] for i in range(1, 5000)}
    deps["s0"] = ["s4999"]
    assert len(find_cycle(deps)) == 5001


def test_snapshot_and_restore_continue_where_the_planner_was():
    deps = {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"], "e": ["d"], "x": [], "y": ["x"]}
    original = ReadyPlanner(deps)
    assert original.ready() == ["a", "x"]
    original.mark_done("a")
    original.mark_failed("x", continue_on_failure=True)
    assert original.ready() == ["b", "c"]
    original.mark_done("b")
    original.mark_done("c")
    restored = ReadyPlanner.restore(deps, original.snapshot())
    assert restored.states() == original.states()
    assert restored.ready() == original.ready() == ["d"]
    restored.mark_done("d")
    assert restored.ready() == ["e"]
    restored.mark_done("e")
    assert restored.finished


def test_restore_keeps_a_stopped_run_stopped():
    deps = {"a": [], "b": [], "c": ["b"]}
    planner = ReadyPlanner(deps)
    planner.ready()
    planner.mark_failed("a")
    planner.mark_done("b")
    restored = ReadyPlanner.restore(deps, planner.snapshot())
    assert restored.stopped and restored.ready() == [] and restored.finished


def test_snapshot_refuses_while_steps_run():
    planner = ReadyPlanner({"a": []})
    planner.ready()
    with pytest.raises(ValueError):
        planner.snapshot()
