"""The pipeline_run orchestrator replayed against histories built with the SDK's ContextBuilder.

Each test builds the history a Durable host would have recorded and checks which actions the
real SDK replay emits next: ready-set scheduling, polling with timers, failure skipping.
"""

from __future__ import annotations

import json

from history_builder import ReplayedHistory

from orchestrations.pipeline_run import pipeline_run

DIAMOND = {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]}


class History(ReplayedHistory):
    """A growing orchestration history plus the replay of the real orchestrator over it."""

    def __init__(self, steps: dict, continue_on_failure: bool = False):
        super().__init__(pipeline_run, {"runId": "r1", "steps": steps, "continueOnStepFailure": continue_on_failure})


def started_steps(actions: list[tuple]) -> list[str]:
    return [payload["step"] for kind, name, payload in actions if name == "step_start"]


def done(status="Completed", **extra) -> dict:
    return {"status": status, "handle": None, "pollAfterSeconds": None, "reused": False, "error": None, **extra}


NOTHING_REUSED = {"reused": {}}


def test_first_episode_plans_the_run():
    actions = History(DIAMOND).actions()
    assert actions == [("activity", "run_plan", {"runId": "r1"})]


def test_root_steps_start_once_the_run_is_planned():
    history = History(DIAMOND).complete(0, NOTHING_REUSED)
    assert started_steps(history.actions()) == ["a"]


def test_reused_prefix_needs_no_activity_and_its_outputs_reach_consumers():
    a_outputs = {"out": {"Datastore": "workspaceblobstore", "Path": "runs/old/a/out"}}
    history = History(DIAMOND).complete(0, {"reused": {"a": a_outputs, "b": {}}})
    actions = history.actions()
    assert started_steps(actions) == ["c"]
    start_c = [payload for kind, name, payload in actions if name == "step_start"][0]
    assert start_c["upstream"] == {"a": a_outputs}


def test_all_reused_finishes_in_one_episode():
    history = History({"a": [], "b": ["a"]}).complete(0, {"reused": {"a": {}, "b": {}}})
    # run_finished gets every completed step and its outputs (it makes sure each has its record)
    assert history.actions()[-1] == ("activity", "run_finished", {
        "runId": "r1", "status": "Finished", "failedSteps": [], "completedSteps": {"a": {}, "b": {}}})


def test_step_outputs_are_passed_to_the_steps_that_consume_them():
    out = {"clean": {"Datastore": "workspaceblobstore", "Path": "runs/r1/a/clean"}}
    history = History({"a": [], "b": ["a"]}).complete(0, NOTHING_REUSED).complete(1, done(outputs=out))
    start_b = [payload for kind, name, payload in history.actions() if name == "step_start"][-1]
    assert start_b == {"runId": "r1", "step": "b", "upstream": {"a": out}}


def test_fan_out_starts_every_ready_step_in_one_episode():
    history = History(DIAMOND).complete(0, NOTHING_REUSED).complete(1, done())
    assert started_steps(history.actions()) == ["a", "b", "c"]


def test_a_step_starts_when_its_own_inputs_are_ready_not_its_level():
    steps = {"a": [], "slow": ["a"], "fast": ["a"], "after_fast": ["fast"]}
    history = History(steps).complete(0, NOTHING_REUSED).complete(1, done())
    # ids: 2 = step_start(fast), 3 = step_start(slow)
    history.complete(2, done())
    assert started_steps(history.actions()) == ["a", "fast", "slow", "after_fast"]
    assert not history.replay()["isDone"]


def test_join_waits_for_all_of_its_inputs():
    history = History(DIAMOND).complete(0, NOTHING_REUSED).complete(1, done()).complete(2, done())
    assert "d" not in started_steps(history.actions())
    history.complete(3, done())
    assert started_steps(history.actions())[-1] == "d"


def test_running_step_is_polled_after_a_durable_timer():
    history = History({"a": []}).complete(0, NOTHING_REUSED)
    history.complete(1, {"status": "Running", "handle": {"id": "h1"}, "pollAfterSeconds": 2})
    actions = history.actions()
    assert actions[-1][0] == "timer"
    history.fire_timer(2)
    actions = history.actions()
    assert actions[-1] == ("activity", "step_poll", {
        "runId": "r1", "step": "a", "upstream": {}, "handle": {"id": "h1"}})


def test_all_steps_completed_finishes_the_run():
    history = History({"a": []}).complete(0, NOTHING_REUSED).complete(1, done())
    actions = history.actions()
    assert actions[-1] == ("activity", "run_finished", {
        "runId": "r1", "status": "Finished", "failedSteps": [], "completedSteps": {"a": {}}})
    history.complete(2, {"status": "Finished"})
    state = history.replay()
    assert state["isDone"] and state["output"]["status"] == "Finished"


def test_failed_step_skips_downstream_and_fails_the_run():
    history = History(DIAMOND).complete(0, NOTHING_REUSED).complete(1, done())
    history.complete(2, done("Failed", error={"code": "StepFailed", "message": "exit 1"}))
    actions = history.actions()
    assert actions[-1][1] == "steps_not_run"
    assert actions[-1][2]["steps"]["Skipped"] == ["d"]
    history.complete(4, {"recorded": ["d"]})  # id 4: steps_not_run; c (id 3) still running
    history.complete(3, done())
    actions = history.actions()
    assert actions[-1] == ("activity", "run_finished", {
        "runId": "r1", "status": "Failed", "failedSteps": ["b"], "completedSteps": {"a": {}, "c": {}}})


def test_without_continue_on_failure_unrelated_steps_do_not_start():
    steps = {"a": [], "b": [], "after_b": ["b"], "after_a": ["a"]}
    history = History(steps).complete(0, NOTHING_REUSED)
    assert started_steps(history.actions()) == ["a", "b"]
    history.complete(1, done("Failed"))  # a fails while b runs
    not_run = history.actions()[-1]
    assert not_run[2]["steps"] == {"Skipped": ["after_a"], "Canceled": ["after_b"]}
    history.complete(3, {}).complete(2, done())  # b completes; after_b must not start
    assert "after_b" not in started_steps(history.actions())


def test_continue_on_failure_runs_independent_branches():
    steps = {"a": [], "b": [], "after_b": ["b"], "after_a": ["a"]}
    history = History(steps, continue_on_failure=True).complete(0, NOTHING_REUSED)
    history.complete(1, done("Failed"))
    history.complete(3, {}).complete(2, done())
    assert started_steps(history.actions()) == ["a", "b", "after_b"]


def test_an_activity_that_raises_is_retried_without_counting_a_step_attempt():
    history = History({"a": [], "b": ["a"]}).complete(0, NOTHING_REUSED)
    history.fail(1, "Activity function 'step_start' failed: storage timeout")
    assert started_steps(history.actions()) == ["a"]  # waiting on the retry timer, b not started
    history.fire_timer(2).complete(3, done())
    assert started_steps(history.actions()) == ["a", "b"]


def test_an_activity_that_keeps_raising_fails_the_step():
    history = History({"a": [], "b": ["a"]}).complete(0, NOTHING_REUSED)
    for attempt_id in (1, 3, 5, 7):  # 4 attempts, each followed by its retry timer
        history.fail(attempt_id, "Activity function 'step_start' failed: storage down")
        history.fire_timer(attempt_id + 1)
    actions = history.actions()
    assert actions[-1][1] == "step_failed"  # no activity recorded it, so the orchestrator has it recorded
    assert actions[-1][2]["step"] == "a" and actions[-1][2]["error"]["code"] == "ActivityFailed"
    history.complete(9, {"status": "Failed"})
    actions = history.actions()
    assert actions[-1][1] == "steps_not_run"
    assert actions[-1][2]["steps"]["Skipped"] == ["b"]


def test_cancel_stops_new_steps_cancels_running_ones_and_ends_canceled():
    steps = {"a": [], "b": [], "after_a": ["a"]}
    history = History(steps).complete(0, NOTHING_REUSED)  # ids 1, 2: step_start a, b
    history.raise_event("CancelRequested")
    assert history.actions()[-1] == ("activity", "steps_not_run", {"runId": "r1", "steps": {"Canceled": ["after_a"]}})
    history.complete(3, {})
    assert history.actions()[-1] == ("activity", "cancel_steps", {"runId": "r1", "steps": {"a": None, "b": None}})
    history.complete(4, {"canceled": ["a", "b"]})
    history.complete(1, done("Canceled")).complete(2, done())  # b had just completed
    assert "after_a" not in started_steps(history.actions())
    assert history.actions()[-1] == ("activity", "run_finished", {
        "runId": "r1", "status": "Canceled", "failedSteps": [], "completedSteps": {"b": {}}})


def test_failed_attempt_with_retries_left_waits_then_starts_the_next_attempt():
    history = History({"a": []}).complete(0, NOTHING_REUSED)
    history.complete(1, {"status": "Running", "retry": {"attempt": 2, "afterSeconds": 4}})
    assert history.actions()[-1][0] == "timer"
    history.fire_timer(2)
    assert history.actions()[-1] == ("activity", "step_start", {
        "runId": "r1", "step": "a", "upstream": {}, "attempt": 2})


def test_cancel_while_waiting_to_retry_cancels_the_step_at_once():
    history = History({"a": []}).complete(0, NOTHING_REUSED)
    history.complete(1, {"status": "Running", "retry": {"attempt": 2, "afterSeconds": 600}})
    history.raise_event("CancelRequested")
    assert history.actions()[-1] == ("activity", "steps_not_run", {"runId": "r1", "steps": {"Canceled": ["a"]}})
    history.complete(3, {})
    history.complete(4, {"canceled": []})
    assert history.actions()[-1] == ("activity", "run_finished", {
        "runId": "r1", "status": "Canceled", "failedSteps": [], "completedSteps": {}})


def test_a_long_chain_continues_as_new_between_steps_and_resumes_where_it_was():
    steps = {f"s{i:02d}": [f"s{i - 1:02d}"] if i else [] for i in range(20)}
    history = History(steps).complete(0, NOTHING_REUSED)
    for task_id in range(1, 17):  # s00..s15 complete one after the other
        history.complete(task_id, done(outputs={"o": {"Datastore": "w", "Path": f"p{task_id}"}}))
    state = history.replay()
    continue_as_new = [a for a in state["actions"][0] if a["actionType"] == 4]
    assert state["isDone"] and continue_as_new
    carried = json.loads(continue_as_new[0]["input"])
    assert carried["steps"] == steps and carried["runId"] == "r1"
    assert carried["resume"]["planner"]["states"]["s15"] == "Completed"
    assert carried["resume"]["outputs"]["s15"] == {"o": {"Datastore": "w", "Path": "p16"}}

    resumed = History(steps)
    resumed.builder.input_ = json.dumps(carried)
    actions = resumed.actions()  # no run_plan again: the next step starts with its input
    assert actions == [("activity", "step_start", {"runId": "r1", "step": "s16",
                                                   "upstream": {"s15": {"o": {"Datastore": "w", "Path": "p16"}}}})]
