"""Compute backends. `get_backend(compute_type)` returns the process-wide backend for a type."""

from shared.compute.base import (
    TERMINAL_JOB_STATES,
    ComputeBackend,
    DataRef,
    JobHandle,
    JobState,
    JobStatus,
    StepJobRequest,
    get_backend,
    parse_metrics,
    register_backend,
    substitute_data_placeholders,
)


def _local_backend():
    from shared.compute.local import LocalBackend  # imported on first use: keeps this package light

    return LocalBackend()


register_backend("local", _local_backend)

__all__ = [
    "TERMINAL_JOB_STATES", "ComputeBackend", "DataRef", "JobHandle", "JobState", "JobStatus",
    "StepJobRequest", "get_backend", "parse_metrics", "register_backend", "substitute_data_placeholders",
]
