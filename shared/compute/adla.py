"""Azure Data Lake Analytics (LEGACY): an `adla` step submits a U-SQL job to the ADLA job REST API.

Microsoft retired Azure Data Lake Analytics on 2024-02-29: no new jobs run on the real service.
This backend is kept for teams with archived U-SQL scripts (and anything that still speaks the
2016-11-01 job API) and is tested against that contract only (tests/contract/adla_service.py).

Data plane `https://{account}.azuredatalakeanalytics.net`, api-version 2016-11-01, Azure AD
token for `https://datalake.azure.net/`:
    PUT  /Jobs/{guid}            CreateJobParameters {name, type USql, properties{type, script},
                                 degreeOfParallelism, priority, related}
    GET  /Jobs/{guid}            JobInformation {state, result, errorMessage[]}
    POST /Jobs/{guid}/CancelJob

Compute entry (type adla): account (required), endpoint (override), storage_uri_scheme (default
wasb on Azure), credential keys as in shared/credentials.py. Step: script_name is the .usql file
in the source directory; `{inputs.X}` / `{outputs.Y}` in the script become storage URIs, and the
step's `--name value` arguments become `DECLARE @name string = "value";` lines before the script.
Settings: degree_of_parallelism (default 1), priority (default 1000; lower runs first),
runtime_version, compile_mode (Semantic|Full|SingleBox).

The job id is a GUID derived from run, step and attempt, so a replayed submit finds the job
(GET before PUT) instead of starting another.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from shared.compute.azure_rest import JsonRestClient, ServiceError
from shared.compute.base import JobHandle, JobStatus, StepJobRequest, substitute_data_placeholders
from shared.compute.client_cache import ClientCache
from shared.compute.remote import (
    commit_written_outputs,
    input_uris,
    job_uuid,
    output_uris,
    refusal_status,
    remote_log,
    save_log,
    submit_or_refuse,
)
from shared.credentials import AUTH_KEYS, azure_credential
from shared.errors import ComputeError, InvalidRequest, TransientError
from shared.redact import redact

log = logging.getLogger("mlpipe.compute.adla")

BACKEND_NAME = "adla"
API_VERSION = "2016-11-01"
DATALAKE_SCOPE = "https://datalake.azure.net//.default"
_CLIENT_KEYS = ("account", "endpoint", *AUTH_KEYS)


def map_job_state(state: str | None, result: str | None) -> str:
    """mlpipe JobState from ADLA's state/result (ADLA spells it "Cancelled")."""
    if state != "Ended":
        return "Running"
    if result == "Succeeded":
        return "Completed"
    if result in ("Cancelled", "Canceled"):
        return "Canceled"
    return "Failed"


def _make_client(settings: Mapping[str, Any], compute: str) -> JsonRestClient:
    endpoint = settings.get("endpoint") or f"https://{settings['account']}.azuredatalakeanalytics.net"
    return JsonRestClient(str(endpoint), azure_credential(settings, compute), DATALAKE_SCOPE, "Data Lake Analytics",
                          API_VERSION)


class AdlaBackend:
    name = BACKEND_NAME

    def __init__(self):
        self._clients = ClientCache(_CLIENT_KEYS, _make_client)

    def _client(self, settings: Mapping[str, Any], compute: str) -> JsonRestClient:
        if not settings.get("account"):
            raise InvalidRequest(f"computes.{compute}.account: required for an adla compute")
        return self._clients.get(settings, compute)

    # ----- submit --------------------------------------------------------------------------

    def submit(self, request: StepJobRequest) -> JobHandle:
        """Start the job; a refusal (bad settings, the service's 4xx) answers a handle that polls Failed."""
        return submit_or_refuse(BACKEND_NAME, request, lambda: self._submit(request))

    def _submit(self, request: StepJobRequest) -> JobHandle:
        settings = dict(request.compute_settings)
        client = self._client(settings, request.compute_name)
        job_id = job_uuid(request)
        handle = JobHandle(backend=BACKEND_NAME, id=job_id, data={
            "compute": {k: settings[k] for k in _CLIENT_KEYS if k in settings}, "computeName": request.compute_name,
            "runId": request.run_id, "step": request.step_name, "outputs": dict(request.outputs)})
        what = f"ADLA job {job_id} (step '{request.step_name}')"
        if client.call("GET", f"/Jobs/{job_id}", what, ok_missing=True)[1] is not None:
            return handle  # a replayed submit: the job of this attempt exists
        try:
            client.call("PUT", f"/Jobs/{job_id}", what, body=self.job_body(request))
        except ServiceError as error:
            if error.status != 409 or client.call("GET", f"/Jobs/{job_id}", what, ok_missing=True)[1] is None:
                raise
        return handle

    def job_body(self, request: StepJobRequest) -> dict:
        step = request.step_settings
        scheme = step.get("storage_uri_scheme") or request.compute_settings.get("storage_uri_scheme")
        inputs = input_uris(request, scheme, cloud_scheme="wasb")
        outputs = output_uris(request, scheme, cloud_scheme="wasb")
        try:
            script = Path(request.script).read_text(encoding="utf-8")
        except (OSError, ValueError) as error:
            raise InvalidRequest(f"steps[{request.step_name}].script_name: cannot read the U-SQL script") from error
        script = substitute_data_placeholders([script], inputs, outputs)[0]
        arguments = substitute_data_placeholders(request.arguments, inputs, outputs)
        script = _declarations(arguments, request.step_name) + script
        properties: dict[str, Any] = {"type": "USql", "script": script}
        if step.get("runtime_version"):
            properties["runtimeVersion"] = str(step["runtime_version"])
        if step.get("compile_mode"):
            properties["compileMode"] = str(step["compile_mode"])
        run_guid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"mlpipe:run:{request.run_id}"))
        return {
            "name": f"mlpipe {request.run_id} {request.step_name}"[:260],
            "type": "USql",
            "properties": properties,
            "degreeOfParallelism": int(step.get("degree_of_parallelism", 1)),
            "priority": int(step.get("priority", 1000)),
            "related": {"pipelineId": run_guid, "pipelineName": "mlpipe", "runId": run_guid,
                        "recurrenceId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"mlpipe:step:{request.step_name}")),
                        "recurrenceName": request.step_name},
        }

    # ----- poll ----------------------------------------------------------------------------

    def poll(self, handle: JobHandle, wait_seconds: float = 0.0) -> JobStatus:
        refused = refusal_status(handle)
        if refused is not None:
            return refused
        client = self._client(handle.data.get("compute", {}), handle.data.get("computeName", ""))
        try:
            _, job = client.call("GET", f"/Jobs/{handle.id}", f"ADLA job {handle.id}", ok_missing=True)
        except TransientError as error:
            log.warning("%s; will poll again", error.message)
            return JobStatus(state="Running")
        except ComputeError as error:  # permanent (credential revoked, account gone): the step fails with it
            return JobStatus(state="Failed", error=error.message)
        if job is None:
            return JobStatus(state="Failed", error=f"ADLA job {handle.id} no longer exists")
        state = map_job_state(job.get("state"), job.get("result"))
        if state == "Running":
            return JobStatus(state="Running")
        save_log(handle.data.get("runId", ""), handle.data.get("step", ""), _log_text(handle.id, job))
        if state == "Completed":
            commit_written_outputs(handle.data.get("outputs", {}))
            return JobStatus(state="Completed", outputs=dict(handle.data.get("outputs", {})))
        errors = _errors(job)
        message = f"ADLA job {handle.id} {job.get('result')}" + (f": {errors}" if errors else "")
        return JobStatus(state=state, error=redact(message))

    # ----- cancel and logs -----------------------------------------------------------------

    def cancel(self, handle: JobHandle) -> None:
        if refusal_status(handle) is not None:
            return  # nothing was started
        client = self._client(handle.data.get("compute", {}), handle.data.get("computeName", ""))
        client.cancel(f"/Jobs/{handle.id}/CancelJob", f"ADLA cancel of job {handle.id}")

    def fetch_logs(self, handle: JobHandle) -> str:
        def live() -> str:
            client = self._client(handle.data.get("compute", {}), handle.data.get("computeName", ""))
            job = client.call("GET", f"/Jobs/{handle.id}", f"ADLA job {handle.id}", ok_missing=True)[1]
            return _log_text(handle.id, job) if job else ""

        return remote_log(handle, live)


def _usql_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _declarations(arguments: list[str], step: str) -> str:
    if not arguments:
        return ""
    if len(arguments) % 2 or any(not a.startswith("--") or not a[2:].isidentifier() for a in arguments[::2]):
        raise InvalidRequest(f"steps[{step}].arguments: an adla step's arguments must be '--name value' pairs")
    return "".join(f"DECLARE @{name[2:]} string = {_usql_string(value)};\n"
                   for name, value in zip(arguments[::2], arguments[1::2], strict=True))


def _errors(job: Mapping[str, Any]) -> str:
    parts = []
    for item in job.get("errorMessage") or []:
        text = item.get("message") or item.get("description") or item.get("errorId") or ""
        if item.get("lineNumber"):
            text += f" (line {item['lineNumber']})"
        if item.get("resolution"):
            text += f"; {item['resolution']}"
        parts.append(text)
    return "; ".join(p for p in parts if p)


def _log_text(job_id: str, job: Mapping[str, Any]) -> str:
    lines = [f"ADLA job {job_id}: {job.get('state')} {job.get('result') or ''}".rstrip()]
    for record in job.get("stateAuditRecords") or []:
        line = f"  {record.get('timeStamp', '')} {record.get('newState', '')} {record.get('details', '')}"
        lines.append(line.rstrip())
    errors = _errors(job)
    if errors:
        lines += ["--- errors ---", errors]
    return "\n".join(lines) + "\n"
