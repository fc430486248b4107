"""What every remote backend shares: storage URIs for a job's data, output commit, job identity.

A remote job reads its inputs and writes its outputs straight in blob storage, addressed by URI.
PipelineData keeps the local backend's commit protocol: the job writes files under
`runs/{run}/{step}/{output}/`, and only when the job has Completed does the backend list what
it wrote and write `{prefix}.manifest.json` (last), so a failed or half-written output is never
visible as complete.

URI schemes (compute setting `storage_uri_scheme`):
  abfss  abfss://{container}@{account}.dfs.core.windows.net/{path}  (Databricks, Spark; ADLS Gen2)
  wasbs  wasbs://{container}@{account}.blob.core.windows.net/{path}
  wasb   wasb://{container}@{account}.blob.core.windows.net/{path}  (U-SQL on Data Lake Analytics)
  https  the blob URL, e.g. https://{account}.blob.core.windows.net/{container}/{path}
The default is abfss for an account on *.blob.core.windows.net and https otherwise (Azurite).
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import Callable, Mapping
from urllib.parse import quote, urlparse

from shared.compute.base import DataRef, JobHandle, JobStatus, StepJobRequest
from shared.datastore import DEFAULT_DATASTORE, Datastore, FileEntry, get_datastore, safe_blob_path
from shared.errors import InvalidRequest, MlpipeError, NotFound, TransientError
from shared.redact import redact
from shared.runs import RunStore
from shared.storage import translate_storage_errors

URI_SCHEMES = ("abfss", "wasbs", "wasb", "https")


def _account_host(datastore: Datastore) -> str:
    return urlparse(datastore.container_client().url).hostname or ""


def default_scheme(datastore: Datastore, cloud_scheme: str = "abfss") -> str:
    return cloud_scheme if _account_host(datastore).endswith(".blob.core.windows.net") else "https"


def storage_uri(datastore_name: str, path: str, scheme: str | None = None, folder: bool = False,
                cloud_scheme: str = "abfss") -> str:
    """The URI a remote job uses for `path` on datastore `datastore_name` (`scheme` None: `cloud_scheme`
    on Azure, https elsewhere)."""
    datastore = get_datastore(datastore_name)
    path = safe_blob_path(path) + ("/" if folder else "")
    scheme = scheme or default_scheme(datastore, cloud_scheme)
    if scheme not in URI_SCHEMES:
        raise InvalidRequest(f"storage_uri_scheme must be one of {', '.join(URI_SCHEMES)}, not {scheme!r}")
    if scheme == "https":
        return f"{datastore.container_client().url.rstrip('/')}/{quote(path)}"
    account = _account_host(datastore).split(".")[0]
    host = "dfs" if scheme == "abfss" else "blob"  # wasb and wasbs name the blob endpoint
    return f"{scheme}://{datastore.container}@{account}.{host}.core.windows.net/{quote(path)}"


def input_uris(request: StepJobRequest, scheme: str | None = None, cloud_scheme: str = "abfss") -> dict[str, str]:
    """{input name: URI}; PipelineData is a folder (its committed prefix), a dataset a blob or folder."""
    return {name: storage_uri(ref.datastore, ref.path, scheme, folder=ref.is_pipeline_data, cloud_scheme=cloud_scheme)
            for name, ref in request.inputs.items()}


def output_uris(request: StepJobRequest, scheme: str | None = None, cloud_scheme: str = "abfss") -> dict[str, str]:
    return {name: storage_uri(DEFAULT_DATASTORE, prefix, scheme, folder=True, cloud_scheme=cloud_scheme)
            for name, prefix in request.outputs.items()}


def commit_written_outputs(outputs: Mapping[str, str], datastore_name: str = DEFAULT_DATASTORE) -> None:
    """Commit what a finished remote job wrote under each output prefix (manifest written last)."""
    datastore = get_datastore(datastore_name)
    for prefix in outputs.values():
        prefix = safe_blob_path(prefix)
        with translate_storage_errors(f"datastore path '{datastore.name}/{prefix}'"):
            blobs = list(datastore.container_client().list_blobs(name_starts_with=prefix + "/"))
        entries = [FileEntry(name=blob.name[len(prefix) + 1:], size=blob.size or 0, md5=_md5(blob))
                   for blob in blobs]
        datastore.commit_output(prefix, entries)


def _md5(blob) -> str:
    md5 = blob.content_settings.content_md5 if blob.content_settings else None
    return base64.b64encode(bytes(md5)).decode("ascii") if md5 else ""


def idempotency_key(request: StepJobRequest) -> str:
    """64 hex characters, the same for every submit of this run's step attempt (and nothing else):
    a replayed activity resubmits with the same key and gets the same remote job back."""
    return hashlib.sha256(f"{request.run_id}/{request.step_name}/{request.attempt}".encode()).hexdigest()


def job_uuid(request: StepJobRequest) -> str:
    """A GUID derived from the idempotency key (services whose job id the client picks)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "mlpipe:" + idempotency_key(request)))


def save_log(run_id: str, step: str, text: str) -> None:
    """Store the remote job's log as the step log (redacted)."""
    RunStore().put_log(run_id, step, redact(text))


def dataref_from(data: Mapping) -> DataRef:
    return DataRef.model_validate(dict(data))


# ----- submits the service refuses --------------------------------------------------------

REFUSED = "refused"


def submit_or_refuse(backend_name: str, request: StepJobRequest, submit: Callable[[], JobHandle]) -> JobHandle:
    """`submit()`, except that a permanent refusal (bad settings, the service's 4xx) becomes a handle
    whose poll answers Failed with the message: the step then fails through the normal path, with
    the service's own words (redacted) in its record and log. Transient errors, still failing after
    retries, propagate: the activity is retried."""
    try:
        return submit()
    except TransientError:
        raise
    except MlpipeError as error:
        message = redact(error.message)
        save_log(request.run_id, request.step_name, f"submit refused: {message}\n")
        return JobHandle(backend=backend_name, id=f"{REFUSED}-{idempotency_key(request)[:32]}",
                         data={REFUSED: message, "runId": request.run_id, "step": request.step_name})


def refusal_status(handle: JobHandle) -> JobStatus | None:
    """Failed for a handle made by submit_or_refuse, else None."""
    if REFUSED in handle.data:
        return JobStatus(state="Failed", error=str(handle.data[REFUSED]))
    return None


def remote_log(handle: JobHandle, live: Callable[[], str]) -> str:
    """A remote step's log: why its submit was refused, else the log stored for the step, else (the
    step still runs, or wrote nothing yet) `live()`, what the service or the handle says now."""
    refused = refusal_status(handle)
    if refused is not None:
        return f"submit refused: {refused.error}\n"
    try:
        stored = RunStore().get_log(handle.data.get("runId", ""), handle.data.get("step", ""))
    except NotFound:
        stored = ""
    return stored or live()
