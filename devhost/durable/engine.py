"""The durable engine: instances, episodes, activity dispatch, timers, sub-orchestrations, events.

Everything runs on the host's asyncio loop (one thread), except sync activity bodies, which run in a
bounded thread pool. State lives in memory (`Instance`); every change is first committed to the
SQLite task hub (`TaskHubStore`), so memory is a cache and SQLite the durable log.

Flow: messages (ExecutionStarted, activity results, fired timers, raised events, sub-orchestration
results, terminate/suspend/resume) land in an instance's inbox; a queued instance runs one episode
that consumes its whole inbox at once (so concurrent completions are batched), commits, then
dispatches the work the orchestrator asked for.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import json
import logging
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from shared.write_behind import POLL_SECONDS, BurstGate, CpuMeter

from ..app_loader import FunctionIndex
from . import history as h
from .actions import ActivityWork, SubOrchestrationWork, TimerWork, UnsupportedWork, is_cancelled_timer, work_for_task
from .activities import failure_texts, run_async_activity, run_sync_activity
from .replay import OrchestrationSession
from .store import Batch, InboxMessage, TaskHubStore

log = logging.getLogger("devhost.durable")

ACTIVE_STATES = ("Pending", "Running", "Suspended", "ContinuedAsNew")
TERMINAL_STATES = ("Completed", "Failed", "Terminated", "Canceled")
CONTROL_TYPES = frozenset({h.EXECUTION_TERMINATED, h.EXECUTION_SUSPENDED, h.EXECUTION_RESUMED})
SCHEDULING_TYPES = (h.TASK_SCHEDULED, h.TIMER_CREATED, h.SUB_ORCHESTRATION_CREATED)
# Client starts at START_BURST_RATE per second or more, while this process is busy (over
# START_BUSY_SHARE of a CPU in the last second), are a burst: their first episodes wait until it
# ends, or START_MAX_HOLD_SECONDS at most (see DurableEngine._adopt_after_burst).
START_BURST_RATE = 5.0
START_BUSY_SHARE = 0.5
START_MAX_HOLD_SECONDS = 10.0


class EngineError(Exception):
    """A management request the engine refuses; `status` is the HTTP status the extension would use."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Instance:
    row: dict
    history: list[dict]
    inbox: list[InboxMessage] = field(default_factory=list)
    dispatched: set[int] = field(default_factory=set)
    session: OrchestrationSession | None = None
    timers: dict[int, asyncio.TimerHandle] = field(default_factory=dict)
    queued: bool = False

    @property
    def id(self) -> str:
        return self.row["instance_id"]

    @property
    def execution_id(self) -> str:
        return self.row["execution_id"]


class DurableEngine:
    def __init__(self, index: FunctionIndex, store: TaskHubStore, *, max_concurrent_activities: int,
                 full_replay: bool = False, max_sessions: int = 512):
        self.index = index
        self.store = store
        self.max_concurrent_activities = max_concurrent_activities
        self.full_replay = full_replay
        self.max_sessions = max_sessions  # cached replay sessions; the least recently used are dropped
        self._sessions: collections.OrderedDict[str, Instance] = collections.OrderedDict()
        self.active: dict[str, Instance] = {}
        self.clock = h.Clock()
        self._ready: collections.deque[str] = collections.deque()
        self._drain_scheduled = False
        self._results: list[tuple[str, str, str, int, dict]] = []  # (kind, instance, execution, task id, event)
        self._flush_scheduled = False
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._async_slots: asyncio.Semaphore | None = None
        self._pending_children: list[tuple[Instance, InboxMessage]] = []  # created by the running episode
        self._held: collections.deque[tuple[float, Instance]] = collections.deque()  # started during a burst
        self._start_gate = BurstGate(rate=START_BURST_RATE, max_delay=START_MAX_HOLD_SECONDS)
        self._cpu_meter = CpuMeter()
        self._release_handle: asyncio.TimerHandle | None = None

    # -- lifecycle --------------------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._pool = ThreadPoolExecutor(self.max_concurrent_activities, thread_name_prefix="activity")
        self._async_slots = asyncio.Semaphore(self.max_concurrent_activities)
        self._recover()

    def stop(self) -> None:
        self._closed = True
        if self._release_handle is not None:
            self._release_handle.cancel()
        for inst in self.active.values():
            for handle in inst.timers.values():
                handle.cancel()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def _recover(self) -> None:
        """Resume every unfinished instance: re-run unfinished work items, re-arm timers, run pending episodes."""
        resumed = 0
        for row in self.store.unfinished_instances(ACTIVE_STATES):
            iid = row["instance_id"]
            history = self.store.history(iid)
            inst = Instance(row=row, history=history, inbox=self.store.inbox(iid), dispatched=scheduled_ids(history))
            self.active[iid] = inst
            for item in self.store.work_items(iid):
                if item["execution_id"] == inst.execution_id:
                    self._dispatch_activity(inst, item["task_id"], item["name"], item["input"])
            for timer in self.store.timers(iid):
                if timer["execution_id"] == inst.execution_id:
                    self._arm_timer(inst, timer["task_id"], h.parse_iso(timer["fire_at"]))
            if inst.inbox:
                self._queue(inst)
            resumed += 1
        if resumed:
            log.info("resuming %d unfinished orchestration(s)", resumed)

    # -- management API (used by the RPC endpoints) ---------------------------------------------
    def lookup(self, instance_id: str) -> dict | None:
        inst = self.active.get(instance_id)
        return inst.row if inst is not None else self.store.instance(instance_id)

    def history_of(self, instance_id: str) -> list[dict]:
        inst = self.active.get(instance_id)
        return list(inst.history) if inst is not None else self.store.history(instance_id)

    def start_new(self, name: str, instance_id: str | None, input_text: str | None, version: str | None = None,
                  *, parent: tuple[str, int, str] | None = None, batch: Batch | None = None) -> str:
        """Create an instance. With `batch`, the caller commits (used for sub-orchestrations)."""
        if name not in self.index.orchestrators:
            raise EngineError(400, f"The function '{name}' doesn't exist, is disabled, or is not an orchestrator "
                                   "function. Additional info: no orchestrator with that name is registered.")
        instance_id = instance_id or uuid.uuid4().hex
        _check_instance_id(instance_id)
        existing = self.lookup(instance_id)
        if existing is not None and existing["status"] in ACTIVE_STATES:
            raise EngineError(409, f"An Orchestration instance with the status {existing['status']} already exists.")
        now = h.iso(self.clock.now())
        execution_id = uuid.uuid4().hex
        row = {"instance_id": instance_id, "name": name, "status": "Pending", "input": input_text, "output": None,
               "custom_status": None, "created": now, "updated": now,
               "parent_id": parent[0] if parent else None, "parent_task_id": parent[1] if parent else None,
               "parent_execution_id": parent[2] if parent else None, "execution_id": execution_id,
               "version": version or ""}
        started = InboxMessage(instance_id, execution_id, self._execution_started(row))
        own_batch = batch is None
        batch = batch or Batch()
        if existing is not None:
            batch.purge.append(instance_id)
        batch.instances.append(dict(row))
        batch.new_inbox.append(started)
        inst = Instance(row=row, history=[])
        if own_batch:
            self.store.commit(batch)
            self._adopt_after_burst(inst, started)
        else:
            self._pending_children.append((inst, started))
        return instance_id

    def raise_event(self, instance_id: str, name: str, payload_text: str | None) -> None:
        inst = self._require_active(instance_id)
        self._post(inst, h.event(h.EVENT_RAISED, h.iso(self.clock.now()), Name=name, Input=payload_text))

    def terminate(self, instance_id: str, reason: str | None) -> None:
        inst = self._require_active(instance_id)
        self._post(inst, h.event(h.EXECUTION_TERMINATED, h.iso(self.clock.now()), Input=reason))

    def suspend(self, instance_id: str, reason: str | None) -> None:
        inst = self._require_active(instance_id)
        self._post(inst, h.event(h.EXECUTION_SUSPENDED, h.iso(self.clock.now()), Reason=reason))

    def resume(self, instance_id: str, reason: str | None) -> None:
        inst = self._require_active(instance_id)
        self._post(inst, h.event(h.EXECUTION_RESUMED, h.iso(self.clock.now()), Reason=reason))

    def purge(self, instance_ids: list[str]) -> int:
        rows = [self.lookup(i) for i in instance_ids]
        doomed = [r["instance_id"] for r in rows if r is not None and r["status"] in TERMINAL_STATES]
        if doomed:
            self.store.commit(Batch(purge=doomed))
        return len(doomed)

    def _require_active(self, instance_id: str) -> Instance:
        inst = self.active.get(instance_id)
        if inst is not None:
            return inst
        if self.store.instance(instance_id) is None:
            raise EngineError(404, f"No instance with ID {instance_id} found.")
        raise EngineError(410, f"Instance with ID {instance_id} is gone: either completed or failed")

    def _post(self, inst: Instance, event: dict) -> None:
        message = InboxMessage(inst.id, None, event)
        self.store.commit(Batch(new_inbox=[message]))
        inst.inbox.append(message)
        self._queue(inst)

    # -- scheduling -------------------------------------------------------------------------------
    def _adopt_after_burst(self, inst: Instance, started: InboxMessage) -> None:
        """Run a new instance's first episode now, or, while client starts come in a burst (HTTP
        submissions at START_BURST_RATE per second or more), once the burst ends or it has waited
        START_MAX_HOLD_SECONDS. On a small host the runs' storage work would otherwise take the CPU
        that accepting submissions needs. The instance is committed and active meanwhile: status
        queries, raised events and terminate work at once, and a crash resumes it like any other."""
        now = time.monotonic()
        self._start_gate.arrive(now)
        self.active[inst.id] = inst
        inst.inbox.append(started)
        if not self._held and self._hold_delay(now, now) == 0:
            self._queue(inst)
            return
        self._held.append((now, inst))
        if self._release_handle is None:
            self._release_handle = self._loop.call_later(POLL_SECONDS, self._release_held)

    def _hold_delay(self, held_since: float, now: float) -> float:
        """Seconds to go on holding a first episode held since `held_since` (0: run it now). A
        moderate stream of starts on an idle host is not held: holding would only add latency."""
        if self._cpu_meter.share(now) < START_BUSY_SHARE:
            return 0.0
        return self._start_gate.delay(held_since, now)

    def _release_held(self) -> None:
        self._release_handle = None
        now = time.monotonic()
        while self._held and not self._closed:
            delay = self._hold_delay(self._held[0][0], now)
            if delay > 0:
                self._release_handle = self._loop.call_later(delay, self._release_held)
                return
            _held_at, inst = self._held.popleft()
            if self.active.get(inst.id) is inst:
                self._queue(inst)

    def _adopt(self, inst: Instance, inbox: list[InboxMessage]) -> None:
        self.active[inst.id] = inst
        inst.inbox.extend(inbox)
        self._queue(inst)

    def _queue(self, inst: Instance) -> None:
        if inst.queued or self._closed:
            return
        inst.queued = True
        self._ready.append(inst.id)
        if not self._drain_scheduled:
            self._drain_scheduled = True
            self._loop.call_soon(self._drain)

    def _drain(self) -> None:
        self._drain_scheduled = False
        deadline = time.perf_counter() + 0.05  # yield to HTTP and results now and then
        while self._ready and not self._closed:
            inst = self.active.get(self._ready.popleft())
            if inst is None:
                continue
            inst.queued = False
            if inst.inbox:
                try:
                    self._run_episode(inst)
                except Exception:
                    log.exception("engine error while running an episode of %s", inst.id)
                    self._abandon(inst)
            if self._ready and time.perf_counter() > deadline:
                self._drain_scheduled = True
                self._loop.call_soon(self._drain)
                return

    def _abandon(self, inst: Instance) -> None:
        """An engine error hit this episode: fall back to what SQLite holds; the next message retries it."""
        self._pending_children = []
        inst.session = None
        inst.row = self.store.instance(inst.id) or inst.row
        inst.history = self.store.history(inst.id)
        inst.inbox = self.store.inbox(inst.id)
        inst.dispatched = scheduled_ids(inst.history)

    # -- episodes ---------------------------------------------------------------------------------
    def _run_episode(self, inst: Instance) -> None:
        row = inst.row
        messages, inst.inbox = inst.inbox, []
        batch = Batch()
        self._pending_children = []
        deliveries: list[InboxMessage] = []
        now = self.clock.now()
        ts = h.iso(now)

        fresh, stale = [], []
        for m in messages:
            t = m.event["EventType"]
            if t in h.COMPLETION_TYPES or t == h.EXECUTION_STARTED:
                (fresh if m.execution_id == inst.execution_id else stale).append(m)
            else:
                fresh.append(m)
        batch.consumed_inbox.extend(m.row_id for m in stale)

        controls = [m for m in fresh if m.event["EventType"] in CONTROL_TYPES]
        terminate = next((m for m in controls if m.event["EventType"] == h.EXECUTION_TERMINATED), None)
        if terminate is not None:
            batch.consumed_inbox.extend(m.row_id for m in fresh)
            self._finish_terminated(inst, terminate.event, ts, batch, deliveries)
            self._commit_episode(inst, batch, [terminate.event], deliveries)
            return

        suspended = row["status"] == "Suspended"
        control_history = []
        for m in controls:
            suspended = m.event["EventType"] == h.EXECUTION_SUSPENDED
            control_history.append(m.event)
        batch.consumed_inbox.extend(m.row_id for m in controls)
        work_messages = [m for m in fresh if m.event["EventType"] not in CONTROL_TYPES]
        if suspended:
            row["status"] = "Suspended"
            inst.inbox = work_messages + inst.inbox  # kept until resumed
            row["updated"] = ts
            batch.instances.append(dict(row))
            self._commit_episode(inst, batch, control_history, deliveries)
            return
        if row["status"] in ("Suspended", "Pending", "ContinuedAsNew"):
            row["status"] = "Running"
        if not work_messages:
            if control_history:
                row["updated"] = ts
                batch.instances.append(dict(row))
            if control_history or batch.consumed_inbox:  # e.g. only stale results: still delete them
                self._commit_episode(inst, batch, control_history, deliveries)
            return

        batch.consumed_inbox.extend(m.row_id for m in work_messages)
        new_events = [h.event(h.ORCHESTRATOR_STARTED, ts)] + [m.event for m in work_messages]
        orchestrator = self.index.orchestrators.get(row["name"])
        if orchestrator is None:
            outcome = None
        else:
            if inst.session is None or self.full_replay:
                inst.session = OrchestrationSession(orchestrator, inst.id, row["parent_id"], row["input"],
                                                    inst.history + control_history + new_events)
            self._touch_session(inst)
            outcome = inst.session.run(new_events)
        added = control_history + new_events

        if outcome is None or outcome.failed:
            error = (outcome.error if outcome else f"The function '{row['name']}' doesn't exist, is disabled, "
                     "or is not an orchestrator function.")
            details = outcome.error_details if outcome else ""
            reason = f"Orchestrator function '{row['name']}' failed: {error}"
            if outcome is not None:
                row["custom_status"] = outcome.custom_status
            added.append(h.event(h.EXECUTION_FAILED, ts, Reason=reason, Details=details))
            self._finish(inst, "Failed", json.dumps(reason), batch, deliveries, ts,
                         h.event(h.SUB_ORCHESTRATION_FAILED, ts, TaskScheduledId=row["parent_task_id"],
                                 Reason=reason, Details=details))
            self._commit_episode(inst, batch, added, deliveries)
            return

        row["custom_status"] = outcome.custom_status
        if outcome.continued_as_new:
            self._continue_as_new(inst, outcome.continue_as_new_input, ts, batch)
            self._commit_episode(inst, batch, [], deliveries, history_reset=True)
            return
        if outcome.completed:
            added.append(h.event(h.EXECUTION_COMPLETED, ts, Result=outcome.output))
            self._finish(inst, "Completed", outcome.output, batch, deliveries, ts,
                         h.event(h.SUB_ORCHESTRATION_COMPLETED, ts, TaskScheduledId=row["parent_task_id"],
                                 Result=outcome.output))
            self._commit_episode(inst, batch, added, deliveries)
            return

        to_run: list[ActivityWork] = []
        to_arm: list[TimerWork] = []
        for task_id, task in outcome.new_tasks:
            if task_id in inst.dispatched:
                continue
            inst.dispatched.add(task_id)
            work = work_for_task(task_id, task, now)
            if isinstance(work, ActivityWork):
                added.append(h.event(h.TASK_SCHEDULED, ts, task_id, Name=work.name, Input=work.input))
                batch.work_items.append((inst.id, inst.execution_id, task_id, work.name, work.input))
                to_run.append(work)
            elif isinstance(work, TimerWork):
                added.append(h.event(h.TIMER_CREATED, ts, task_id, FireAt=h.iso(work.fire_at)))
                batch.timers.append((inst.id, inst.execution_id, task_id, h.iso(work.fire_at)))
                to_arm.append(work)
            elif isinstance(work, SubOrchestrationWork):
                added.append(self._start_child(inst, work, ts, batch, deliveries))
            else:
                assert isinstance(work, UnsupportedWork)
                added.append(h.event(h.TASK_SCHEDULED, ts, task_id, Name=work.what))
                deliveries.append(InboxMessage(inst.id, inst.execution_id, h.event(
                    h.TASK_FAILED, ts, TaskScheduledId=task_id,
                    Reason=f"{work.what} is not supported by the mlpipe devhost", Details="")))
        for task_id in list(inst.timers):
            if is_cancelled_timer(inst.session.open_task(task_id)):
                inst.timers.pop(task_id).cancel()
                batch.done_timers.append((inst.id, inst.execution_id, task_id))
        added.append(h.event(h.ORCHESTRATOR_COMPLETED, ts))
        row["updated"] = ts
        batch.instances.append(dict(row))
        self._commit_episode(inst, batch, added, deliveries)
        for work in to_run:
            self._dispatch_activity(inst, work.task_id, work.name, work.input)
        for work in to_arm:
            self._arm_timer(inst, work.task_id, work.fire_at)

    def _commit_episode(self, inst: Instance, batch: Batch, added: list[dict], deliveries: list[InboxMessage],
                        history_reset: bool = False) -> None:
        if history_reset:
            batch.history_resets.append(inst.id)
            inst.history = []
        base = len(inst.history)
        batch.history.extend((inst.id, base + i, e) for i, e in enumerate(added))
        if not any(r["instance_id"] == inst.id for r in batch.instances):
            batch.instances.append(dict(inst.row))
        batch.new_inbox.extend(deliveries)
        children, self._pending_children = self._pending_children, []
        self.store.commit(batch)
        inst.history.extend(added)
        if inst.row["status"] in TERMINAL_STATES:
            self._forget(inst)
        for child, started in children:
            self._adopt(child, [started])
        for message in deliveries:
            target = self.active.get(message.instance_id)
            if target is not None:
                target.inbox.append(message)
                self._queue(target)

    def _start_child(self, inst: Instance, work: SubOrchestrationWork, ts: str, batch: Batch,
                     deliveries: list[InboxMessage]) -> dict:
        child_id = work.instance_id or f"{inst.id}:{work.task_id}"
        created = h.event(h.SUB_ORCHESTRATION_CREATED, ts, work.task_id, Name=work.name, InstanceId=child_id,
                          Input=work.input)
        try:
            self.start_new(work.name, child_id, work.input, parent=(inst.id, work.task_id, inst.execution_id),
                           batch=batch)
        except EngineError as exc:
            deliveries.append(InboxMessage(inst.id, inst.execution_id, h.event(
                h.SUB_ORCHESTRATION_FAILED, ts, TaskScheduledId=work.task_id, Reason=exc.message, Details="")))
        return created

    def _finish(self, inst: Instance, status: str, output: str | None, batch: Batch,
                deliveries: list[InboxMessage], ts: str, parent_event: dict) -> None:
        row = inst.row
        row["status"], row["output"], row["updated"] = status, output, ts
        batch.instances.append(dict(row))
        batch.clear_pending.append(inst.id)
        if row["parent_id"] and row["parent_id"] in self.active:  # a finished parent no longer listens
            deliveries.append(InboxMessage(row["parent_id"], row["parent_execution_id"], parent_event))

    def _finish_terminated(self, inst: Instance, event: dict, ts: str, batch: Batch,
                           deliveries: list[InboxMessage]) -> None:
        reason = event.get("Input")
        parent_event = h.event(h.SUB_ORCHESTRATION_FAILED, ts, TaskScheduledId=inst.row["parent_task_id"],
                               Reason=f"Orchestration '{inst.id}' was terminated: {reason}", Details="")
        self._finish(inst, "Terminated", json.dumps(reason), batch, deliveries, ts, parent_event)

    def _continue_as_new(self, inst: Instance, input_text: str | None, ts: str, batch: Batch) -> None:
        row = inst.row
        for handle in inst.timers.values():
            handle.cancel()
        inst.timers.clear()
        inst.dispatched.clear()
        inst.session = None
        batch.clear_pending.append(inst.id)
        row["execution_id"] = uuid.uuid4().hex
        row["input"], row["output"], row["status"], row["updated"] = input_text, None, "Running", ts
        batch.instances.append(dict(row))
        started = InboxMessage(inst.id, row["execution_id"], self._execution_started(row))
        batch.new_inbox.append(started)
        # raised events that arrived meanwhile stay queued for the new execution
        carried = [m for m in inst.inbox if m.event["EventType"] == h.EVENT_RAISED]
        inst.inbox = [started] + carried
        self._queue(inst)

    def _execution_started(self, row: dict) -> dict:
        return h.event(h.EXECUTION_STARTED, row["updated"], Name=row["name"], Version=row["version"] or "",
                       Input=row["input"], OrchestrationInstance={"InstanceId": row["instance_id"],
                                                                  "ExecutionId": row["execution_id"]})

    def _forget(self, inst: Instance) -> None:
        for handle in inst.timers.values():
            handle.cancel()
        self.active.pop(inst.id, None)
        self._sessions.pop(inst.id, None)
        inst.session = None

    def _touch_session(self, inst: Instance) -> None:
        self._sessions[inst.id] = inst
        self._sessions.move_to_end(inst.id)
        while len(self._sessions) > self.max_sessions:
            _, evicted = self._sessions.popitem(last=False)
            evicted.session = None  # its next episode replays the history from scratch

    # -- activities ------------------------------------------------------------------------------
    def _dispatch_activity(self, inst: Instance, task_id: int, name: str, input_text: str | None) -> None:
        key = (inst.id, inst.execution_id, task_id)
        activity = self.index.activities.get(name)
        if activity is None:
            reason = f"The function '{name}' doesn't exist, is disabled, or is not an activity function."
            self._result("work", key, h.event(h.TASK_FAILED, "", TaskScheduledId=task_id, Reason=reason, Details=""))
            return
        if activity.is_async:
            asyncio.ensure_future(self._run_async(activity, key, input_text))
            return
        future = self._pool.submit(run_sync_activity, activity, input_text)
        future.add_done_callback(lambda f: self._from_pool_thread(name, key, f))

    def _from_pool_thread(self, name: str, key: tuple[str, str, int], future: Future) -> None:
        if self._closed or self._loop.is_closed():
            return  # shutting down: the work item stays pending and runs again on the next start
        try:
            self._loop.call_soon_threadsafe(self._activity_done, name, key, future)
        except RuntimeError:  # the loop closed in between
            pass

    async def _run_async(self, activity, key, input_text) -> None:
        async with self._async_slots:
            future: Future = Future()
            try:
                future.set_result(await run_async_activity(activity, input_text))
            except Exception as exc:
                future.set_exception(exc)
        self._activity_done(activity.name, key, future)

    def _activity_done(self, name: str, key: tuple[str, str, int], future: Future) -> None:
        if self._closed or future.cancelled():
            return
        exc = future.exception()
        if exc is None:
            event = h.event(h.TASK_COMPLETED, "", TaskScheduledId=key[2], Result=future.result())
        else:
            reason, details = failure_texts(name, exc)
            log.warning("activity %s of %s failed: %s", name, key[0], reason)
            event = h.event(h.TASK_FAILED, "", TaskScheduledId=key[2], Reason=reason, Details=details)
        self._result("work", key, event)

    # -- timers ----------------------------------------------------------------------------------
    def _arm_timer(self, inst: Instance, task_id: int, fire_at: dt.datetime) -> None:
        delay = max(0.0, (fire_at - h.utcnow()).total_seconds())
        key = (inst.id, inst.execution_id, task_id)
        inst.timers[task_id] = self._loop.call_later(delay, self._timer_due, inst, key, fire_at)

    def _timer_due(self, inst: Instance, key: tuple[str, str, int], fire_at: dt.datetime) -> None:
        remaining = (fire_at - h.utcnow()).total_seconds()
        if remaining > 0:  # the loop's monotonic clock ran ahead of the wall clock
            inst.timers[key[2]] = self._loop.call_later(remaining, self._timer_due, inst, key, fire_at)
            return
        inst.timers.pop(key[2], None)
        self._result("timer", key, h.event(h.TIMER_FIRED, "", TimerId=key[2], FireAt=h.iso(fire_at)))

    # -- results: batched "delete pending item + insert inbox message" transactions --------------
    def _result(self, kind: str, key: tuple[str, str, int], event: dict) -> None:
        if self._closed:
            return
        event["Timestamp"] = h.iso(self.clock.now())
        self._results.append((kind, key[0], key[1], key[2], event))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush_results)

    def _flush_results(self) -> None:
        self._flush_scheduled = False
        results, self._results = self._results, []
        if self._closed or not results:
            return
        batch = Batch()
        deliveries: list[tuple[Instance, InboxMessage]] = []
        for kind, iid, execution_id, task_id, event in results:
            (batch.done_work_items if kind == "work" else batch.done_timers).append((iid, execution_id, task_id))
            inst = self.active.get(iid)
            if inst is None or inst.execution_id != execution_id:
                continue  # the execution ended (terminated, failed, continued as new): drop the result
            message = InboxMessage(iid, execution_id, event)
            batch.new_inbox.append(message)
            deliveries.append((inst, message))
        self.store.commit(batch)
        for inst, message in deliveries:
            inst.inbox.append(message)
            self._queue(inst)


def scheduled_ids(history: list[dict]) -> set[int]:
    """Task ids the host already acted on in this execution (each dispatch records a scheduling event)."""
    return {e["EventId"] for e in history if e["EventType"] in SCHEDULING_TYPES}


def _check_instance_id(instance_id: str) -> None:
    """Instance id rules of the extension: 1-100 chars, no leading '@', none of / \\ # ? or control chars."""
    if not 1 <= len(instance_id) <= 100 or instance_id.startswith("@") or \
            any(c in "/\\#?" or ord(c) < 32 for c in instance_id):
        raise EngineError(400, f"Invalid instance ID '{instance_id[:120]}': 1-100 characters, not starting with "
                               "'@', without / \\ # ? or control characters.")
