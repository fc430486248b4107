"""What every compute backend takes and answers, and the registry that picks one by compute type.

The step executor builds a StepJobRequest, calls `submit`, keeps the JSON-able JobHandle in
durable state, and calls `poll(handle, wait_seconds)` until the JobStatus is terminal. A backend
that cannot follow a job any more (host restarted) answers `Lost`; the executor submits again.
"""

from __future__ import annotations

import json
import math
import re
import threading
from collections.abc import Callable, Mapping
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, Field

from shared.errors import ComputeError, InvalidRequest

JobState = Literal["Running", "Completed", "Failed", "Canceled", "Lost"]
TERMINAL_JOB_STATES = frozenset({"Completed", "Failed", "Canceled", "Lost"})

# {inputs.NAME} / {outputs.NAME} inside an argument; parameters were substituted before.
DATA_PLACEHOLDER = re.compile(r"\{(inputs|outputs)\.([A-Za-z_][A-Za-z0-9_-]*)\}")


class DataRef(BaseModel):
    """Where a step input lives: a dataset path, or a PipelineData output prefix (read via its manifest)."""

    datastore: str = "workspaceblobstore"
    path: str
    is_pipeline_data: bool = False


class StepJobRequest(BaseModel):
    run_id: str
    step_name: str
    script: str                        # absolute path of the script, inside an extracted snapshot
    source_dir: str                    # the extracted snapshot folder (the step's source_directory)
    arguments: list[str] = Field(default_factory=list)   # {inputs.X}/{outputs.Y} still in them
    inputs: dict[str, DataRef] = Field(default_factory=dict)
    outputs: dict[str, str] = Field(default_factory=dict)  # output name -> blob prefix, default datastore
    environment: dict[str, str] = Field(default_factory=dict)
    timeout_seconds: float | None = None
    compute_name: str = "local"
    compute_settings: dict[str, Any] = Field(default_factory=dict)  # the definition's computes entry
    step_type: str = "python"          # python | databricks | adla | data_transfer
    step_settings: dict[str, Any] = Field(default_factory=dict)     # the step's backend settings
    attempt: int = 1                   # part of a remote submit's idempotency key (a retry is a new job)


class JobHandle(BaseModel):
    """Opaque to everyone but its backend; JSON-able so it can live in orchestration state."""

    backend: str
    id: str
    data: dict[str, Any] = Field(default_factory=dict)

    def to_dict(self) -> dict:
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobHandle:
        return cls.model_validate(dict(data))


Metrics = dict[str, float | int | list[float | int]]


class JobStatus(BaseModel):
    state: JobState
    error: str | None = None
    metrics: Metrics = Field(default_factory=dict)
    outputs: dict[str, str] = Field(default_factory=dict)  # committed output name -> blob prefix

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_JOB_STATES


# Asked once before any of a step's own code runs (the reuse claim); False: do not run the step.
Gate = Callable[[], bool]


@runtime_checkable
class ComputeBackend(Protocol):
    name: str

    def submit(self, request: StepJobRequest) -> JobHandle: ...

    def poll(self, handle: JobHandle, wait_seconds: float = 0.0) -> JobStatus: ...

    def cancel(self, handle: JobHandle) -> None: ...

    def fetch_logs(self, handle: JobHandle) -> str: ...


# ----- helpers every backend can use ------------------------------------------------------


def substitute_data_placeholders(arguments: list[str], inputs: Mapping[str, str],
                                 outputs: Mapping[str, str]) -> list[str]:
    """Replace `{inputs.X}` / `{outputs.Y}` in each argument; InvalidRequest naming an unknown one."""
    tables = {"inputs": inputs, "outputs": outputs}

    def replace(match: re.Match) -> str:
        kind, name = match.group(1), match.group(2)
        if name not in tables[kind]:
            raise InvalidRequest(f"argument placeholder {match.group(0)} names no {kind[:-1]} of the step")
        return str(tables[kind][name])

    return [DATA_PLACEHOLDER.sub(replace, str(argument)) for argument in arguments]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def parse_metrics(text: str) -> Metrics:
    """Metrics from JSON lines: `{"name": n, "value": v}` or `{n: v, ...}`; numbers only.

    A name logged more than once becomes a list in logging order; lines that are not JSON
    objects, and values that are not finite numbers, are ignored.
    """
    collected: dict[str, list] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if not isinstance(entry, dict):
            continue
        if set(entry) >= {"name", "value"} and isinstance(entry["name"], str):
            pairs = [(entry["name"], entry["value"])]
        else:
            pairs = list(entry.items())
        for name, value in pairs:
            values = value if isinstance(value, list) else [value]
            numbers = [v for v in values if _is_number(v)]
            if numbers:
                collected.setdefault(str(name), []).extend(numbers)
    return {name: values[0] if len(values) == 1 else values for name, values in collected.items()}


# ----- registry ---------------------------------------------------------------------------

_factories: dict[str, Callable[[], ComputeBackend]] = {}
_instances: dict[str, ComputeBackend] = {}
_registry_lock = threading.Lock()


def register_backend(compute_type: str, factory: Callable[[], ComputeBackend]) -> None:
    """Make `compute_type` (a definition's `computes.X.type`, or "local") resolvable."""
    with _registry_lock:
        _factories[compute_type] = factory
        _instances.pop(compute_type, None)


def get_backend(compute_type: str) -> ComputeBackend:
    """The process-wide backend instance for `compute_type`; ComputeError if none is registered."""
    backend = _instances.get(compute_type)
    if backend is not None:
        return backend
    with _registry_lock:
        if compute_type not in _instances:
            factory = _factories.get(compute_type)
            if factory is None:
                known = ", ".join(sorted(_factories)) or "none"
                raise ComputeError(f"no compute backend for type '{compute_type}' (known: {known})")
            _instances[compute_type] = factory()
        return _instances[compute_type]


def submit_gated(backend: ComputeBackend, request: StepJobRequest, gate: Gate | None) -> JobHandle | None:
    """Submit unless `gate()` says no (then None; no gate: always submit). A backend that can start up
    while the gate is asked (local: its interpreter) takes the gate itself; any other asks it first."""
    if gate is None:
        return backend.submit(request)
    if getattr(backend, "takes_gate", False):
        return backend.submit(request, gate=gate)
    return backend.submit(request) if gate() else None
