"""Calling user functions the way the Python worker does: kwargs by binding name, `context` when declared."""

from __future__ import annotations

import uuid
from typing import Any


class InvocationContext:
    """Minimal stand-in for azure.functions.Context (what a function sees as its `context` parameter)."""

    def __init__(self, function_name: str, function_directory: str = ""):
        self.invocation_id = str(uuid.uuid4())
        self.function_name = function_name
        self.function_directory = function_directory
        self.trace_context = None
        self.retry_context = None
        self.thread_local_storage = None


def with_context(kwargs: dict[str, Any], wants_context: bool, function_name: str) -> dict[str, Any]:
    if wants_context:
        kwargs["context"] = InvocationContext(function_name)
    return kwargs
