"""data_transfer steps: a server-side blob copy from one datastore to the step's output.

Like Azure ML v1's DataTransferStep, nothing flows through the host: every source blob is copied
by the storage service itself (Copy Blob, `start_copy_from_url`), across containers or across
storage accounts. The source is authorised with a short-lived read-only SAS (account-key
connections) or a user-delegation SAS (Azure AD); the SAS is used only in the copy request and
never stored or logged. poll reads each destination blob's copy status until every copy
succeeded, then commits the output (manifest last) as every step does.

The step: exactly one input (a dataset: blob or folder, on any datastore; or PipelineData) and
one output (PipelineData on the default datastore). `settings.destination: {datastore, path}`
also copies the files there (e.g. publishing into another account); the step completes when
every copy did. It runs on the built-in `local` compute; the host only starts and watches the
copies.
"""

from __future__ import annotations

import contextlib
import logging
import time
from datetime import datetime, timedelta, timezone
from pathlib import PurePosixPath

from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError

from shared.compute.base import JobHandle, JobStatus, StepJobRequest
from shared.compute.remote import idempotency_key, refusal_status, remote_log, save_log, submit_or_refuse
from shared.datastore import DEFAULT_DATASTORE, Datastore, FileEntry, get_datastore, safe_blob_path
from shared.errors import ComputeError, InvalidRequest, NotFound
from shared.redact import redact
from shared.settings import get_settings
from shared.storage import blob_service, parallel_map, translate_storage_errors

log = logging.getLogger("mlpipe.compute.transfer")

BACKEND_NAME = "data_transfer"
SAS_LIFETIME = timedelta(hours=4)
POLL_INTERVAL_SECONDS = 0.2


class TransferBackend:
    name = BACKEND_NAME

    # ----- submit --------------------------------------------------------------------------

    def submit(self, request: StepJobRequest) -> JobHandle:
        """Start the job; a refusal (bad settings, the service's 4xx) answers a handle that polls Failed."""
        return submit_or_refuse(BACKEND_NAME, request, lambda: self._submit(request))

    def _submit(self, request: StepJobRequest) -> JobHandle:
        if len(request.inputs) != 1 or len(request.outputs) != 1:
            raise InvalidRequest(f"steps[{request.step_name}]: a data_transfer step takes exactly one input "
                                 "and one output")
        (input_name, ref), = request.inputs.items()
        (output_name, prefix), = request.outputs.items()
        source = get_datastore(ref.datastore)
        files = _source_files(source, ref.path, ref.is_pipeline_data)
        targets = [(DEFAULT_DATASTORE, prefix)] + _destination(request)
        sas = _SourceAuthorizer(source)

        def start(item: tuple[tuple[str, str], str]) -> None:
            (datastore_name, target_prefix), relative = item
            target = get_datastore(datastore_name)
            source_blob = f"{safe_blob_path(ref.path)}/{relative}" if relative != _SINGLE else safe_blob_path(ref.path)
            name = PurePosixPath(ref.path).name if relative == _SINGLE else relative
            destination = target.container_client().get_blob_client(f"{target_prefix}/{name}")
            with translate_storage_errors(f"copy to datastore path '{target.name}/{target_prefix}/{name}'"):
                try:
                    destination.start_copy_from_url(sas.url(source_blob))
                except ResourceExistsError:
                    pass  # a copy to it is already pending (a replayed submit): keep following it
                except HttpResponseError as error:
                    if getattr(error, "error_code", None) == "PendingCopyOperation":
                        return
                    raise

        parallel_map(start, [(target, f) for target in targets for f in files])
        names = [PurePosixPath(ref.path).name if f == _SINGLE else f for f in files]
        return JobHandle(backend=BACKEND_NAME, id=idempotency_key(request), data={
            "runId": request.run_id, "step": request.step_name, "output": prefix, "files": names,
            "targets": [list(t) for t in targets],
            "source": f"{source.name}/{safe_blob_path(ref.path)}", "input": input_name, "outputName": output_name,
            "started": time.time(),
        })

    # ----- poll ----------------------------------------------------------------------------

    def poll(self, handle: JobHandle, wait_seconds: float = 0.0) -> JobStatus:
        """Wait up to `wait_seconds` (at most MLPIPE_TRANSFER_POLL_SECONDS) for every copy to end."""
        refused = refusal_status(handle)
        if refused is not None:
            return refused
        deadline = time.monotonic() + min(max(0.0, wait_seconds), get_settings().transfer_poll_seconds)
        prefix = handle.data["output"]
        copies = _copies(handle)
        while True:
            states = parallel_map(lambda c: _copy_state(get_datastore(c[0]), f"{c[1]}/{c[2]}"), copies)
            pairs = list(zip(copies, states, strict=True))
            failed = [(c, s) for c, s in pairs if s[0] in ("failed", "missing")]
            aborted = [c for c, s in pairs if s[0] == "aborted"]
            if aborted:
                self._finish_log(handle, pairs, "canceled")
                return JobStatus(state="Canceled", error=f"copy aborted for {len(aborted)} file(s)")
            if failed:
                (datastore_name, target_prefix, name), (_status, detail, _props) = failed[0]
                self._finish_log(handle, pairs, "failed")
                return JobStatus(state="Failed", error=redact(
                    f"copy of '{name}' from {handle.data['source']} to {datastore_name}/{target_prefix} failed: "
                    f"{detail or 'destination blob missing'}"))
            if all(s[0] == "success" for s in states):
                entries = [FileEntry(name=c[2], size=props.size or 0, md5=_md5(props))
                           for c, (_s, _d, props) in pairs if (c[0], c[1]) == (DEFAULT_DATASTORE, prefix)]
                get_datastore(DEFAULT_DATASTORE).commit_output(prefix, entries)
                self._finish_log(handle, pairs, "completed")
                return JobStatus(state="Completed", outputs={handle.data["outputName"]: prefix},
                                 metrics={"files_copied": len(entries), "bytes_copied": sum(e.size for e in entries)})
            if time.monotonic() >= deadline:
                return JobStatus(state="Running")
            time.sleep(POLL_INTERVAL_SECONDS)

    def _finish_log(self, handle: JobHandle, pairs: list, outcome: str) -> None:
        targets = ", ".join(f"{ds}/{path}" for ds, path in _targets(handle))
        lines = [f"data_transfer from {handle.data['source']} to {targets}: {outcome}"]
        for (datastore_name, target_prefix, name), (status, detail, props) in pairs:
            size = f" {props.size} bytes" if props is not None and props.size is not None else ""
            where = f"{datastore_name}/{target_prefix}/{name}"
            lines.append(f"  {where}: {status}{size}{' - ' + detail if detail else ''}")
        save_log(handle.data["runId"], handle.data["step"], "\n".join(lines) + "\n")

    # ----- cancel and logs -----------------------------------------------------------------

    def cancel(self, handle: JobHandle) -> None:
        """Abort every copy still pending; a no-op for copies that ended."""
        if refusal_status(handle) is not None:
            return  # nothing was started
        def abort(copy: tuple[str, str, str]) -> None:
            target = get_datastore(copy[0])
            status, _detail, props = _copy_state(target, f"{copy[1]}/{copy[2]}")
            if status != "pending" or props is None:
                return
            blob = target.container_client().get_blob_client(f"{copy[1]}/{copy[2]}")
            with contextlib.suppress(HttpResponseError):  # ended meanwhile
                blob.abort_copy(props.copy.id)

        parallel_map(abort, _copies(handle))

    def fetch_logs(self, handle: JobHandle) -> str:
        count = len(handle.data.get("files", []))
        return remote_log(handle, lambda: f"data_transfer from {handle.data.get('source')}: copying {count} file(s)\n")


# ----- helpers ----------------------------------------------------------------------------

_SINGLE = "\0single"  # marks "the source path is one blob"


def _destination(request: StepJobRequest) -> list[tuple[str, str]]:
    """settings.destination {datastore, path}: a further copy, e.g. to publish into another account."""
    destination = request.step_settings.get("destination")
    if not destination:
        return []
    if not isinstance(destination, dict) or not destination.get("datastore") or not destination.get("path"):
        raise InvalidRequest(f"steps[{request.step_name}].settings.destination: needs datastore and path")
    return [(str(destination["datastore"]), safe_blob_path(str(destination["path"])))]


def _targets(handle: JobHandle) -> list[tuple[str, str]]:
    return [tuple(t) for t in handle.data.get("targets") or [[DEFAULT_DATASTORE, handle.data["output"]]]]


def _copies(handle: JobHandle) -> list[tuple[str, str, str]]:
    """(datastore, prefix, file name) of every copy the step started."""
    return [(ds, prefix, name) for ds, prefix in _targets(handle) for name in handle.data.get("files", [])]


def _source_files(source: Datastore, path: str, is_pipeline_data: bool) -> list[str]:
    """Names relative to `path` (or [_SINGLE] when `path` is a single blob); NotFound if nothing is there."""
    if is_pipeline_data:
        manifest = source.read_manifest(path)
        if manifest is None:
            raise NotFound(f"pipeline data '{source.name}/{path}' not found (no committed manifest)")
        return [entry["name"] for entry in manifest["files"]]
    path = safe_blob_path(path)
    with translate_storage_errors(f"datastore path '{source.name}/{path}'"):
        names = [b.name for b in source.container_client().list_blobs(name_starts_with=path)]
    if path in names:
        return [_SINGLE]
    children = [name[len(path) + 1:] for name in names if name.startswith(path + "/")]
    if not children:
        raise NotFound(f"datastore path '{source.name}/{path}' not found (no blob or folder there)")
    return children


def _copy_state(target: Datastore, name: str) -> tuple[str, str, object]:
    """(pending|success|aborted|failed|missing, status description, blob properties)."""
    blob = target.container_client().get_blob_client(name)
    with translate_storage_errors(f"datastore path '{target.name}/{name}'"):
        try:
            props = blob.get_blob_properties()
        except ResourceNotFoundError:
            return "missing", "", None
    copy = props.copy
    status = (copy.status or "success") if copy is not None else "success"
    return str(status).lower(), (copy.status_description or "") if copy is not None else "", props


def _md5(props) -> str:
    import base64

    md5 = props.content_settings.content_md5 if props.content_settings else None
    return base64.b64encode(bytes(md5)).decode("ascii") if md5 else ""


class _SourceAuthorizer:
    """URLs of source blobs that the storage service can read for a copy: a read-only SAS signed
    with the account key, or with a user delegation key when the datastore uses Azure AD."""

    def __init__(self, source: Datastore):
        self.source = source
        self.service = blob_service(source.connection)
        self._delegation_key = None
        self.expiry = datetime.now(timezone.utc) + SAS_LIFETIME

    def url(self, blob_name: str) -> str:
        from azure.storage.blob import BlobSasPermissions, generate_blob_sas

        client = self.source.container_client().get_blob_client(blob_name)
        credential = self.service.credential
        key = getattr(credential, "account_key", None)
        options = dict(account_name=self.service.account_name, container_name=self.source.container,
                       blob_name=blob_name, permission=BlobSasPermissions(read=True), expiry=self.expiry)
        if key:
            sas = generate_blob_sas(account_key=key, **options)
        else:
            sas = generate_blob_sas(user_delegation_key=self._user_delegation_key(), **options)
        return f"{client.url}?{sas}"

    def _user_delegation_key(self):
        if self._delegation_key is None:
            with translate_storage_errors(f"user delegation key of datastore '{self.source.name}'"):
                try:
                    self._delegation_key = self.service.get_user_delegation_key(
                        datetime.now(timezone.utc) - timedelta(minutes=5), self.expiry)
                except HttpResponseError as error:
                    raise ComputeError(f"datastore '{self.source.name}': cannot sign a copy source "
                                       f"({getattr(error, 'error_code', '') or error.status_code})") from error
        return self._delegation_key
