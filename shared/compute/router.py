"""The built-in "local" compute runs python steps as local processes and data_transfer steps as
server-side copies (the host only starts and polls them). Submit goes by the request's step type;
poll, cancel and logs by the backend named in the handle, so a handle always returns to the
backend that made it."""

from __future__ import annotations

from shared.compute.base import Gate, JobHandle, JobStatus, StepJobRequest, submit_gated
from shared.compute.local import LocalBackend
from shared.compute.transfer import BACKEND_NAME as TRANSFER_BACKEND
from shared.compute.transfer import TransferBackend


class LocalComputeBackend(LocalBackend):
    def __init__(self, transfer: TransferBackend | None = None, **local_options):
        super().__init__(**local_options)
        self.transfer = transfer or TransferBackend()

    def submit(self, request: StepJobRequest, gate: Gate | None = None) -> JobHandle | None:
        if request.step_type == "data_transfer":
            return submit_gated(self.transfer, request, gate)
        return super().submit(request, gate)

    def poll(self, handle: JobHandle, wait_seconds: float = 0.0) -> JobStatus:
        if handle.backend == TRANSFER_BACKEND:
            return self.transfer.poll(handle, wait_seconds)
        return super().poll(handle, wait_seconds)

    def cancel(self, handle: JobHandle) -> None:
        if handle.backend == TRANSFER_BACKEND:
            return self.transfer.cancel(handle)
        return super().cancel(handle)

    def fetch_logs(self, handle: JobHandle) -> str:
        if handle.backend == TRANSFER_BACKEND:
            return self.transfer.fetch_logs(handle)
        return super().fetch_logs(handle)
