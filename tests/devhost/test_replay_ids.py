"""Task ids read from the SDK's open tasks agree with the extension's cumulative-action view (§2.3)."""

import datetime as dt
import json

import azure.durable_functions as df
from azure.durable_functions.models.actions.ActionType import ActionType

from devhost.app_loader import OrchestratorFunction
from devhost.durable import history as h
from devhost.durable.actions import ActivityWork, TimerWork, flatten_actions, work_for_task
from devhost.durable.replay import OrchestrationSession

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
FIRE_AND_FORGET = {ActionType.CONTINUE_AS_NEW, ActionType.SIGNAL_ENTITY}


def mlpipe_like(context: df.DurableOrchestrationContext):
    """Per-step pending tasks re-yielded through task_any, timers between polls, a retried activity, a fan-out."""
    pending = {name: context.call_activity("start", name) for name in ("a", "b")}
    polls = {"a": 0, "b": 0}
    while pending:
        done = yield context.task_any(list(pending.values()))
        name = next(n for n, t in pending.items() if t is done)
        del pending[name]
        if isinstance(done.action_repr, type(None)):
            continue
        kind = done.action_repr.action_type if not isinstance(done.action_repr, list) else None
        if kind == ActionType.CREATE_TIMER:
            pending[name] = context.call_activity("poll", name)
        elif polls[name] < 2:
            polls[name] += 1
            pending[name] = context.create_timer(context.current_utc_datetime + dt.timedelta(seconds=1))
    retry = df.RetryOptions(first_retry_interval_in_milliseconds=10, max_number_of_attempts=3)
    yield context.call_activity_with_retry("flaky", retry, None)
    results = yield context.task_all([context.call_activity("fan", i) for i in range(3)])
    return sum(results)


class Driver:
    def __init__(self, fn):
        self.fn = OrchestratorFunction("o", None, fn, None)
        self.history = []
        self.session = None
        self.clock = 0
        self.seen_actions = 0
        self.dispatched = {}

    def ts(self) -> str:
        self.clock += 1
        return h.iso(T0 + dt.timedelta(seconds=self.clock))

    def episode(self, events: list[dict]):
        new = [h.event(h.ORCHESTRATOR_STARTED, self.ts())] + events
        if self.session is None:
            self.session = OrchestrationSession(self.fn, "i", None, None, self.history + new)
        outcome = self.session.run(new)
        self.history += new
        # the extension's view: new cumulative actions, flattened
        actions = [a for a in flatten_actions(self.session.context._action_payload_v2)
                   if a.action_type not in FIRE_AND_FORGET]
        new_actions, self.seen_actions = actions[self.seen_actions:], len(actions)
        # the host's view: new open tasks, minus the retry NoOps that have no action
        with_actions = [(i, t) for i, t in outcome.new_tasks if not hasattr(t.action_repr, "metadata")]
        assert [t.action_repr for _, t in with_actions] == new_actions
        for task_id, task in outcome.new_tasks:
            self.dispatched[task_id] = work_for_task(task_id, task, T0)
        return outcome

    def complete(self, task_id: int, value) -> dict:
        return h.event(h.TASK_COMPLETED, self.ts(), TaskScheduledId=task_id, Result=json.dumps(value))

    def fail(self, task_id: int) -> dict:
        return h.event(h.TASK_FAILED, self.ts(), TaskScheduledId=task_id, Reason="nope", Details="")

    def fire(self, task_id: int) -> dict:
        return h.event(h.TIMER_FIRED, self.ts(), TimerId=task_id)


def pending_of(driver, kind):
    return sorted(i for i, w in driver.dispatched.items() if isinstance(w, kind))


def test_ids_follow_the_cumulative_action_order():
    d = Driver(mlpipe_like)
    out = d.episode([h.event(h.EXECUTION_STARTED, d.ts(), Name="o", Version="", Input=None)])
    assert [i for i, _ in out.new_tasks] == [0, 1]  # start a, start b
    out = d.episode([d.complete(1, 0)])  # b started first -> timer for b
    assert [(i, type(d.dispatched[i])) for i, _ in out.new_tasks] == [(2, TimerWork)]
    out = d.episode([d.complete(0, 0), d.fire(2)])  # batch of two completions in one episode
    assert [i for i, _ in out.new_tasks] == [3, 4]  # timer for a, poll b
    step = 5
    done = {0, 1, 2}
    while not out.completed and step < 40:
        # complete everything that is pending, one per episode
        candidates = [i for i in sorted(d.dispatched) if i not in done]
        if not candidates:
            break
        task_id = candidates[0]
        done.add(task_id)
        work = d.dispatched[task_id]
        if isinstance(work, TimerWork):
            event = d.fire(task_id)
        elif isinstance(work, ActivityWork) and work.name == "flaky" and len([w for w in d.dispatched.values()
                                                                            if getattr(w, "name", "") == "flaky"]) < 2:
            event = d.fail(task_id)
        else:
            event = d.complete(task_id, 1 if isinstance(work, ActivityWork) and work.name == "fan" else 0)
        out = d.episode([event])
        step += 1
    assert out.completed and out.output == "3"
    names = [getattr(w, "name", "timer") for _, w in sorted(d.dispatched.items())]
    # retry: failed attempt, NoOp retry timer, rescheduled attempt; then the 3-wide fan-out
    assert names[-6:] == ["flaky", "timer", "flaky", "fan", "fan", "fan"]


def test_cold_replay_of_the_same_history_asks_for_nothing_new():
    d = Driver(mlpipe_like)
    d.episode([h.event(h.EXECUTION_STARTED, d.ts(), Name="o", Version="", Input=None)])
    d.episode([d.complete(0, 0), d.complete(1, 0)])
    cold = OrchestrationSession(d.fn, "i", None, None, d.history + [h.event(h.ORCHESTRATOR_STARTED, d.ts())])
    outcome = cold.run([])
    # the still-open tasks come back with the same ids, all of them already dispatched
    assert sorted(i for i, _ in outcome.new_tasks) == [2, 3]
    assert {i: type(w) for i, w in d.dispatched.items() if i >= 2} == {2: TimerWork, 3: TimerWork}
