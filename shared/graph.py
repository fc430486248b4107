"""The step DAG and the ready-set planner. Pure: no I/O, no clock, no randomness.

The Durable orchestrator replays its code from the start on every wake-up, so everything here is
deterministic (sorted outputs) and built from plain JSON-able data: the orchestrator input carries
`{"steps": {name: [upstream names]}}` and `ReadyPlanner.from_dependencies` rebuilds the planner.

Edges point from a step to the steps it needs (its *upstream*): data edges from inputs naming
`STEP.OUTPUT` plus `run_after`. `shared.spec` derives them; this module only sees names.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from shared.statuses import StepStatus

__all__ = [
    "CycleError",
    "FailureOutcome",
    "PipelineGraph",
    "ReadyPlanner",
    "StepState",
    "find_cycle",
    "topological_order",
]

Dependencies = Mapping[str, Iterable[str]]


class CycleError(ValueError):
    """The dependencies contain a cycle; `cycle` lists it in data-flow order, first == last."""

    def __init__(self, cycle: list[str]):
        super().__init__("dependency cycle " + " -> ".join(cycle))
        self.cycle = cycle


def _normalise(dependencies: Dependencies) -> dict[str, tuple[str, ...]]:
    """Sorted, de-duplicated upstream tuples; every upstream must itself be a step."""
    normalised = {name: tuple(sorted(set(upstream))) for name, upstream in dependencies.items()}
    for name in sorted(normalised):
        for upstream in normalised[name]:
            if upstream not in normalised:
                raise ValueError(f"step {name!r} depends on unknown step {upstream!r}")
    return normalised


def _dependents(dependencies: Mapping[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    """Invert the edges: step -> the steps that need it (sorted)."""
    dependents: dict[str, list[str]] = {name: [] for name in dependencies}
    for name in sorted(dependencies):
        for upstream in dependencies[name]:
            dependents[upstream].append(name)
    return {name: tuple(children) for name, children in dependents.items()}


def find_cycle(dependencies: Dependencies) -> list[str] | None:
    """One cycle in data-flow order (`a -> b` means b needs a), first == last; None if acyclic.

    Iterative depth-first search (no recursion limit on long chains), visiting names in sorted
    order so the same definition always reports the same cycle. Unknown upstream names are
    ignored here; `_normalise` reports them.
    """
    deps = {name: sorted(set(upstream)) for name, upstream in dependencies.items()}
    unvisited, on_path, done = 0, 1, 2
    state = dict.fromkeys(deps, unvisited)
    for root in sorted(deps):
        if state[root] != unvisited:
            continue
        path = [root]
        iterators = [iter(deps[root])]
        state[root] = on_path
        while path:
            upstream = next(iterators[-1], None)
            if upstream is None:
                state[path.pop()] = done
                iterators.pop()
                continue
            if upstream not in state or state[upstream] == done:
                continue
            if state[upstream] == on_path:
                # path runs "needs" edges: path[i] needs path[i+1]; reverse for data flow.
                cycle = path[path.index(upstream):] + [upstream]
                return list(reversed(cycle))
            state[upstream] = on_path
            path.append(upstream)
            iterators.append(iter(deps[upstream]))
    return None


def topological_order(dependencies: Dependencies) -> list[str]:
    """Every step after all of its upstream steps; ties broken by name. Raises CycleError."""
    deps = _normalise(dependencies)
    dependents = _dependents(deps)
    waiting = {name: len(upstream) for name, upstream in deps.items()}
    heap = [name for name, count in waiting.items() if count == 0]
    heapq.heapify(heap)
    order: list[str] = []
    while heap:
        name = heapq.heappop(heap)
        order.append(name)
        for child in dependents[name]:
            waiting[child] -= 1
            if waiting[child] == 0:
                heapq.heappush(heap, child)
    if len(order) != len(deps):
        raise CycleError(find_cycle(deps) or [])
    return order


@dataclass(frozen=True)
class PipelineGraph:
    """An acyclic step graph. `dependencies[step]` are the steps it needs, sorted."""

    dependencies: Mapping[str, tuple[str, ...]]
    dependents: Mapping[str, tuple[str, ...]] = field(repr=False)

    @classmethod
    def from_dependencies(cls, dependencies: Dependencies) -> PipelineGraph:
        deps = _normalise(dependencies)
        cycle = find_cycle(deps)
        if cycle:
            raise CycleError(cycle)
        return cls(dependencies=deps, dependents=_dependents(deps))

    @classmethod
    def from_definition(cls, definition) -> PipelineGraph:
        """From a `shared.spec.PipelineDefinition` (duck-typed to keep this module import-free)."""
        return cls.from_dependencies(definition.dependencies())

    def topological_order(self) -> list[str]:
        return topological_order(self.dependencies)

    def upstream(self, step: str) -> list[str]:
        return list(self.dependencies[step])

    def downstream(self, step: str) -> list[str]:
        """Every step that needs `step`, directly or transitively, sorted."""
        return sorted(_reachable(self.dependents, [step], stop=lambda _: False))

    def to_json(self) -> dict:
        """The orchestrator input shape: `{"steps": {name: [upstream names]}}`."""
        return {"steps": {name: list(self.dependencies[name]) for name in sorted(self.dependencies)}}


def _reachable(edges: Mapping[str, Iterable[str]], starts: Iterable[str], stop) -> set[str]:
    """Nodes reachable from `starts` (excluded) along `edges`, not expanding nodes where stop(n)."""
    seen: set[str] = set()
    stack = list(starts)
    while stack:
        for nxt in edges[stack.pop()]:
            if nxt in seen or stop(nxt):
                continue
            seen.add(nxt)
            stack.append(nxt)
    return seen


class StepState:
    """Planner states: the step statuses (shared/statuses.py) as plain strings, so planner state
    stays plain JSON (it is carried across continue-as-new) and can be recorded as it is."""

    NOT_STARTED = StepStatus.NOT_STARTED.value
    RUNNING = StepStatus.RUNNING.value
    COMPLETED = StepStatus.COMPLETED.value
    FAILED = StepStatus.FAILED.value
    SKIPPED = StepStatus.SKIPPED.value
    CANCELED = StepStatus.CANCELED.value

    TERMINAL = frozenset(status.value for status in StepStatus if status.is_terminal)


@dataclass(frozen=True)
class FailureOutcome:
    """What a failure (or a cancel) did to steps that had not started.

    skipped: downstream of the failed step; they can never run (Azure ML shows them Skipped).
    canceled: not downstream, but the run is stopping (no ContinueOnStepFailure, or a cancel),
      so they will not be started; record them as Canceled.
    """

    skipped: list[str]
    canceled: list[str]

    def to_json(self) -> dict:
        return {"skipped": list(self.skipped), "canceled": list(self.canceled)}


class ReadyPlanner:
    """Hands out steps as soon as all of *their* upstream steps completed (not level by level).

    Semantics follow Azure ML v1 pipelines:
    - `ready()` returns the steps that became runnable since the last call and marks them
      Running; each step is handed out exactly once.
    - A failure marks every transitive downstream step Skipped. Without ContinueOnStepFailure
      the run stops: no further step is handed out, every other not-started step is Canceled,
      and the steps already running are left to finish (their `mark_done`/`mark_failed` are
      still accepted). With ContinueOnStepFailure, branches that do not need the failed step
      go on.
    - `finished` is true once no step is running or can still be started.

    Cost: construction O(steps + edges); over a whole run, every edge is looked at a constant
    number of times (a done step decrements its dependents' counters once; a skipped step is
    never expanded twice). `ready()` is O(k log k) in the k steps it returns.
    """

    def __init__(self, dependencies: Dependencies):
        graph = PipelineGraph.from_dependencies(dependencies)
        self._dependencies = graph.dependencies
        self._dependents = graph.dependents
        self._waiting_on = {name: len(upstream) for name, upstream in self._dependencies.items()}
        self._state = dict.fromkeys(self._dependencies, StepState.NOT_STARTED)
        self._runnable: set[str] = {name for name, count in self._waiting_on.items() if count == 0}
        self._active = len(self._state)  # steps not yet terminal (NotStarted or Running)
        self._running = 0
        self._stopped = False

    @classmethod
    def from_dependencies(cls, dependencies: Dependencies) -> ReadyPlanner:
        """From the orchestrator input's `steps` mapping ({name: [upstream names]})."""
        return cls(dependencies)

    def snapshot(self) -> dict:
        """JSON-able state for `restore` (the orchestrator carries it across continue-as-new).

        Only valid while no step is Running: the orchestrator takes it between steps.
        """
        if self._running:
            raise ValueError("cannot snapshot a planner while steps are running")
        return {"states": self.states(), "stopped": self._stopped}

    @classmethod
    def restore(cls, dependencies: Dependencies, snapshot: Mapping) -> ReadyPlanner:
        """A planner in the state `snapshot()` recorded."""
        planner = cls(dependencies)
        for name, state in snapshot["states"].items():
            if state == StepState.COMPLETED:
                planner._runnable.discard(name)
                planner._state[name] = StepState.RUNNING
                planner._running += 1
                planner.mark_done(name)
            elif state in StepState.TERMINAL:
                planner._settle([name], state)
        planner._runnable = {name for name in planner._runnable if planner._state[name] == StepState.NOT_STARTED}
        planner._stopped = bool(snapshot["stopped"])
        return planner

    # -- queries -----------------------------------------------------------------------------
    @property
    def steps(self) -> list[str]:
        return sorted(self._state)

    def state(self, step: str) -> str:
        return self._state[step]

    def states(self) -> dict[str, str]:
        """{step: StepState value}, sorted by name: JSON-able."""
        return {name: self._state[name] for name in sorted(self._state)}

    @property
    def stopped(self) -> bool:
        """True after a failure without ContinueOnStepFailure, or after cancel()."""
        return self._stopped

    @property
    def finished(self) -> bool:
        return self._active == 0

    def is_finished(self) -> bool:
        return self.finished

    # -- transitions -------------------------------------------------------------------------
    def ready(self) -> list[str]:
        """Steps that may start now, sorted; each is returned once and becomes Running."""
        if self._stopped or not self._runnable:
            return []
        handed_out = sorted(self._runnable)
        self._runnable.clear()
        for name in handed_out:
            self._state[name] = StepState.RUNNING
        self._running += len(handed_out)
        return handed_out

    def mark_done(self, step: str) -> None:
        """The step completed (ran or was reused); its dependents may become ready."""
        self._finish_running(step, StepState.COMPLETED)
        for child in self._dependents[step]:
            self._waiting_on[child] -= 1
            if self._waiting_on[child] == 0 and self._state[child] == StepState.NOT_STARTED:
                self._runnable.add(child)

    def mark_failed(self, step: str, continue_on_failure: bool = False) -> FailureOutcome:
        """The step failed. Returns the not-started steps this settles (see FailureOutcome)."""
        self._finish_running(step, StepState.FAILED)
        skipped = self._settle(self._downstream_not_started(step), StepState.SKIPPED)
        canceled: list[str] = []
        if not continue_on_failure:
            canceled = self._stop()
        return FailureOutcome(skipped=skipped, canceled=canceled)

    def mark_canceled(self, step: str) -> FailureOutcome:
        """A running step ended Canceled (run cancel): the run stops as after a failure."""
        self._finish_running(step, StepState.CANCELED)
        skipped = self._settle(self._downstream_not_started(step), StepState.SKIPPED)
        return FailureOutcome(skipped=skipped, canceled=self._stop())

    def cancel(self) -> list[str]:
        """Run cancel requested: no step starts any more; returns the not-started ones (Canceled).

        Running steps stay Running until the orchestrator reports them (mark_done / mark_failed
        / mark_canceled) after cancelling them on their compute.
        """
        return self._stop()

    # -- internals ---------------------------------------------------------------------------
    def _finish_running(self, step: str, new_state: str) -> None:
        current = self._state[step]  # KeyError for an unknown step
        if current != StepState.RUNNING:
            raise ValueError(f"step {step!r} is {current}, not Running; it cannot become {new_state}")
        self._state[step] = new_state
        self._running -= 1
        self._active -= 1

    def _downstream_not_started(self, step: str) -> set[str]:
        # A step already Skipped had its own downstream skipped then: do not expand it again.
        return _reachable(
            self._dependents, [step], stop=lambda name: self._state[name] != StepState.NOT_STARTED
        )

    def _settle(self, names: Iterable[str], new_state: str) -> list[str]:
        settled = sorted(names)
        for name in settled:
            self._state[name] = new_state
            self._runnable.discard(name)
        self._active -= len(settled)
        return settled

    def _stop(self) -> list[str]:
        if self._stopped:  # everything not started was settled the first time
            return []
        self._stopped = True
        not_started = [name for name, state in self._state.items() if state == StepState.NOT_STARTED]
        return self._settle(not_started, StepState.CANCELED)
