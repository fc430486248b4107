"""Invoke activity functions with the worker's own converter (DURABLE-NOTES §3)."""

from __future__ import annotations

import traceback
from pathlib import Path
from typing import Any

from azure.functions import meta
from azure.functions.durable_functions import ActivityTriggerConverter

from ..app_loader import ActivityFunction
from ..invocation import with_context

_HOST_DIR = str(Path(__file__).resolve().parent.parent)


def decode_input(text: str | None) -> Any:
    return ActivityTriggerConverter.decode(meta.Datum(type="string", value=text if text is not None else "null"),
                                           trigger_metadata=None)


def encode_output(value: Any) -> str:
    return ActivityTriggerConverter.encode(value, expected_type=None).value


def activity_kwargs(activity: ActivityFunction, input_text: str | None) -> dict[str, Any]:
    return with_context({activity.input_arg: decode_input(input_text)}, activity.wants_context, activity.name)


def run_sync_activity(activity: ActivityFunction, input_text: str | None) -> str:
    """Runs in a pool thread. Returns the result JSON text; raises whatever the activity raises."""
    return encode_output(activity.user_function(**activity_kwargs(activity, input_text)))


async def run_async_activity(activity: ActivityFunction, input_text: str | None) -> str:
    return encode_output(await activity.user_function(**activity_kwargs(activity, input_text)))


def failure_texts(name: str, exc: BaseException) -> tuple[str, str]:
    """(Reason, Details) as the extension reports a failed activity."""
    reason = f"Activity function '{name}' failed: {type(exc).__name__}: {exc}"
    return reason, user_traceback(exc)


def user_traceback(exc: BaseException) -> str:
    """The traceback without the host's own frames (thread pool, this module)."""
    te = traceback.TracebackException.from_exception(exc)
    te.stack = traceback.StackSummary.from_list(
        [f for f in te.stack if not (f.filename.startswith(_HOST_DIR) or "concurrent/futures" in f.filename)])
    return "".join(te.format()).strip()
