"""Load an unmodified function_app.py through the azure-functions v2 introspection API.

Same approach as the Python worker's indexing: import the module, find the single
`FunctionRegister` instance, call `get_functions()`, and sort the functions by trigger type.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import azure.functions as func

log = logging.getLogger("devhost")


class AppLoadError(RuntimeError):
    """function_app.py could not be imported or indexed."""


@dataclass
class HttpFunction:
    name: str
    route: str
    methods: frozenset[str] | None  # None = every method
    auth_level: str  # "anonymous" | "function" | "admin"
    trigger_arg: str
    user_function: Callable[..., Any]
    client_args: list[str]  # kwargs that receive the durable client binding JSON
    wants_context: bool


@dataclass
class OrchestratorFunction:
    name: str
    handle: Callable[..., Any]  # the SDK's Orchestrator.create(...) handle
    generator_function: Callable[..., Any]
    input_type: Any


@dataclass
class ActivityFunction:
    name: str
    input_arg: str
    user_function: Callable[..., Any]
    is_async: bool
    wants_context: bool


@dataclass
class TimerFunction:
    name: str
    schedule: str
    run_on_startup: bool
    use_monitor: bool | None
    trigger_arg: str
    user_function: Callable[..., Any]
    client_args: list[str]
    wants_context: bool


@dataclass
class BindingTriggerFunction:
    """A queue- or blob-triggered function (devhost/queue_triggers.py, devhost/blob_triggers.py)."""
    name: str
    kind: str  # "queueTrigger" | "blobTrigger"
    settings: dict  # the trigger's function.json attributes (queueName, path, connection, ...)
    trigger_arg: str
    user_function: Callable[..., Any]
    client_args: list[str]
    wants_context: bool


@dataclass
class FunctionIndex:
    http: list[HttpFunction] = field(default_factory=list)
    orchestrators: dict[str, OrchestratorFunction] = field(default_factory=dict)
    activities: dict[str, ActivityFunction] = field(default_factory=dict)
    timers: list[TimerFunction] = field(default_factory=list)
    queues: list[BindingTriggerFunction] = field(default_factory=list)
    blobs: list[BindingTriggerFunction] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    registered_names: set[tuple[str, str]] = field(default_factory=set)  # real names, not raw __name__ aliases


def _enum_value(value: Any) -> str:
    return str(getattr(value, "value", value)).lower()


def _wants_context(fn: Callable[..., Any], bound: set[str]) -> bool:
    """The worker passes `context` (func.Context) when the function declares it and no binding uses the name."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return "context" in params and "context" not in bound


def find_function_register(module: Any) -> func.FunctionRegister:
    found = [v for v in vars(module).values() if isinstance(v, func.FunctionRegister)]
    if not found:
        raise AppLoadError(f"{module.__file__} defines no FunctionApp/DFApp instance")
    if len(found) > 1:
        raise AppLoadError(f"{module.__file__} defines {len(found)} FunctionApp instances; exactly one is allowed")
    return found[0]


def import_function_app(app_root: Path, module_name: str = "function_app") -> Any:
    root = str(app_root.resolve())
    if root not in sys.path:
        sys.path.insert(0, root)
    if not (app_root / f"{module_name}.py").is_file():
        raise AppLoadError(f"no {module_name}.py in {app_root}")
    try:
        return importlib.import_module(module_name)
    except Exception as exc:
        raise AppLoadError(f"importing {app_root / (module_name + '.py')} failed: {exc!r}") from exc


def index_functions(app: func.FunctionRegister) -> FunctionIndex:
    index = FunctionIndex()
    for f in app.get_functions():
        trigger = f.get_trigger()
        kind = trigger.type
        name = f.get_function_name()
        bindings = f.get_bindings()
        bound = {b.name for b in bindings}
        client_args = [b.name for b in bindings if b.type == "durableClient"]
        user = f.get_user_function()
        if kind == "httpTrigger":
            methods = getattr(trigger, "methods", None)
            index.http.append(HttpFunction(
                name=name,
                route=(trigger.route or name).strip("/"),
                methods=frozenset(_enum_value(m).upper() for m in methods) if methods else None,
                auth_level=_enum_value(trigger.auth_level or "function"),
                trigger_arg=trigger.name,
                user_function=user,
                client_args=client_args,
                wants_context=_wants_context(user, bound),
            ))
        elif kind == "orchestrationTrigger":
            registered = getattr(trigger, "orchestration", None) or name
            generator = getattr(user, "orchestrator_function", None)
            if generator is None:
                raise AppLoadError(f"orchestrator '{name}' is not wrapped by the Durable Functions SDK")
            entry = OrchestratorFunction(registered, user, generator, getattr(user, "_df_input_type", None))
            _register(index, index.orchestrators, registered, f._name, entry, "orchestrator")
        elif kind == "activityTrigger":
            registered = getattr(trigger, "activity", None) or name
            entry = ActivityFunction(registered, trigger.name, user, inspect.iscoroutinefunction(user),
                                     _wants_context(user, bound))
            _register(index, index.activities, registered, f._name, entry, "activity")
        elif kind == "timerTrigger":
            index.timers.append(TimerFunction(
                name=name, schedule=trigger.schedule, run_on_startup=bool(getattr(trigger, "run_on_startup", False)),
                use_monitor=getattr(trigger, "use_monitor", None), trigger_arg=trigger.name, user_function=user,
                client_args=client_args,
                wants_context=_wants_context(user, bound),
            ))
        elif kind in ("queueTrigger", "blobTrigger"):
            entry = BindingTriggerFunction(name, kind, trigger.get_dict_repr(), trigger.name, user, client_args,
                                           _wants_context(user, bound))
            (index.queues if kind == "queueTrigger" else index.blobs).append(entry)
        else:
            index.skipped.append(f"{name} ({kind})")
    if index.skipped:
        log.warning("devhost does not run these triggers: %s", ", ".join(index.skipped))
    return index


def _register(index: FunctionIndex, table: dict, name: str, raw_name: str, entry: Any, what: str) -> None:
    """Register under the extension's name and, leniently, under the raw Python __name__.

    `context.call_activity(fn_object)` sends the raw __name__ (DURABLE-NOTES §1), ignoring
    `@function_name` and `activity=`; an alias never overrides a real registration.
    """
    key = (what, name)
    if key in index.registered_names:
        raise AppLoadError(f"two {what} functions are registered as '{name}'")
    index.registered_names.add(key)
    table[name] = entry
    if raw_name and raw_name != name and raw_name not in table:
        table[raw_name] = entry


def load_app(app_root: Path) -> FunctionIndex:
    module = import_function_app(app_root)
    return index_functions(find_function_register(module))
