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
    # Imported on first use: keeps this package light. A data_transfer step runs on the host's
    # "local" compute (the copy itself is server-side), so "local" routes by step type.
    from shared.compute.router import LocalComputeBackend

    return LocalComputeBackend()


def _databricks_backend():
    from shared.compute.databricks import DatabricksBackend

    return DatabricksBackend()


def _transfer_backend():
    from shared.compute.transfer import TransferBackend

    return TransferBackend()


def _aml_backend():
    from shared.compute.aml import AmlBackend

    return AmlBackend()


def _adla_backend():
    from shared.compute.adla import AdlaBackend

    return AdlaBackend()


register_backend("local", _local_backend)
register_backend("databricks", _databricks_backend)
register_backend("data_transfer", _transfer_backend)  # handles name it: run cancel finds it by handle
register_backend("aml", _aml_backend)
register_backend("adla", _adla_backend)

__all__ = [
    "TERMINAL_JOB_STATES", "ComputeBackend", "DataRef", "JobHandle", "JobState", "JobStatus",
    "StepJobRequest", "get_backend", "parse_metrics", "register_backend", "substitute_data_placeholders",
]
