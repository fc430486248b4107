"""Azure Machine Learning: a `python` step on an `aml` compute becomes an Azure ML command job.

Speaks the Azure ML REST API (Microsoft.MachineLearningServices, api-version 2024-10-01) through
azure-core with an azure-identity credential, not the azure-ai-ml SDK: the four resources used
(code version, job, compute, cancel) are plain ARM PUT/GET/POST calls, while azure-ai-ml would
add ~40 packages (marshmallow, azure-storage-file-*, etc.) to a Function App whose cold start
and deployment size matter, and hides the idempotency we need (the job name we choose *is* the
idempotency key). Same wire format as `MLClient.jobs.create_or_update`.

Compute entry (type aml), non-secret:
    subscription_id, resource_group, workspace_name   # required
    cluster: cpu-cluster                               # AmlCompute name (absent: serverless)
    environment: azureml:AzureML-sklearn-1.5:1         # or an environment ARM id (per step: settings.environment)
    experiment_name: mlpipe
    datastores: {workspaceblobstore: workspaceblobstore}   # mlpipe datastore -> Azure ML datastore name
    provision: {vm_size: STANDARD_DS3_V2, min_nodes: 0, max_nodes: 4, idle_seconds: 120, location: westeurope}
    endpoint: https://management.azure.com             # tests point it at the contract server
    credential / managed_identity_client_id / tenant_id + client_id + client_secret_setting / token_setting

The code snapshot (the step's source_directory) is uploaded to the default datastore under
`code/{sourceHash}/` and registered as code version `mlpipe-{hash}`/1. Inputs and outputs are
`azureml://datastores/{name}/paths/{path}` URIs, so PipelineData flows through the same blob
container mlpipe uses: that container must be an Azure ML datastore of the workspace (e.g. point
MLPIPE_BLOBSTORE_CONTAINER at the workspace's `azureml-blobstore-...` container). The command
writes its console output and metrics to a hidden output `runs/{run}/{step}/.mlpipe/`, read back
as the step log and metrics.

The job name is `{runId}-{step}-a{attempt}`: a replayed submit finds the job by name (GET before
PUT), so one attempt is one Azure ML job.
"""

from __future__ import annotations

import logging
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from shared.compute.azure_rest import JsonRestClient, ServiceError
from shared.compute.base import DATA_PLACEHOLDER, JobHandle, JobStatus, StepJobRequest, parse_metrics
from shared.compute.client_cache import ClientCache
from shared.compute.remote import commit_written_outputs, refusal_status, remote_log, save_log, submit_or_refuse
from shared.credentials import AUTH_KEYS, azure_credential
from shared.datastore import DEFAULT_DATASTORE, default_datastore, get_datastore
from shared.errors import ComputeError, InvalidRequest, NotFound, TransientError
from shared.redact import redact

log = logging.getLogger("mlpipe.compute.aml")

BACKEND_NAME = "aml"
API_VERSION = "2024-10-01"
ARM_SCOPE = "https://management.azure.com/.default"
LOG_OUTPUT = "mlpipe_log"
_RUNNING = {"NotStarted", "Starting", "Provisioning", "Preparing", "Queued", "Running", "Finalizing",
            "CancelRequested", "NotResponding", "Paused", "Unknown"}
_CLIENT_KEYS = ("endpoint", "subscription_id", "resource_group", "workspace_name", "api_version", *AUTH_KEYS)
STDERR_TAIL_LINES = 20


def map_job_status(status: str | None) -> str:
    """mlpipe JobState for an Azure ML JobStatus; unknown values are still Running (AML adds states)."""
    if status == "Completed":
        return "Completed"
    if status == "Failed":
        return "Failed"
    if status in ("Canceled", "Cancelled"):
        return "Canceled"
    return "Running"


def _make_client(settings: Mapping[str, Any], compute: str) -> JsonRestClient:
    return JsonRestClient(str(settings.get("endpoint") or "https://management.azure.com"),
                          azure_credential(settings, compute), ARM_SCOPE, "Azure ML",
                          str(settings.get("api_version") or API_VERSION))


class AmlBackend:
    name = BACKEND_NAME

    def __init__(self):
        self._clients = ClientCache(_CLIENT_KEYS, _make_client)

    # ----- plumbing ------------------------------------------------------------------------

    def _client(self, settings: Mapping[str, Any], compute: str) -> JsonRestClient:
        missing = [k for k in ("subscription_id", "resource_group", "workspace_name") if not settings.get(k)]
        if missing:
            raise InvalidRequest(f"computes.{compute}: an aml compute needs {', '.join(missing)}")
        return self._clients.get(settings, compute)

    @staticmethod
    def _workspace(settings: Mapping[str, Any]) -> str:
        return (f"/subscriptions/{settings['subscription_id']}/resourceGroups/{settings['resource_group']}"
                f"/providers/Microsoft.MachineLearningServices/workspaces/{settings['workspace_name']}")

    # ----- submit --------------------------------------------------------------------------

    def submit(self, request: StepJobRequest) -> JobHandle:
        """Start the job; a refusal (bad settings, the service's 4xx) answers a handle that polls Failed."""
        return submit_or_refuse(BACKEND_NAME, request, lambda: self._submit(request))

    def _submit(self, request: StepJobRequest) -> JobHandle:
        settings = dict(request.compute_settings)
        client = self._client(settings, request.compute_name)
        workspace = self._workspace(settings)
        job_name = f"{request.run_id}-{request.step_name}-a{request.attempt}"
        data = {"compute": {k: settings[k] for k in _CLIENT_KEYS if k in settings},
                "computeName": request.compute_name, "runId": request.run_id, "step": request.step_name,
                "outputs": dict(request.outputs), "logPrefix": _log_prefix(request), "phase": "job"}
        existing = client.call("GET", f"{workspace}/jobs/{job_name}", f"Azure ML job {job_name}", ok_missing=True)[1]
        if existing is not None:  # a replayed submit: that job is this attempt
            return JobHandle(backend=BACKEND_NAME, id=job_name, data=data)
        body = self.job_body(request, self._register_code(client, workspace, request))
        data["job"] = body
        if self._needs_cluster(client, workspace, {**settings, **request.step_settings}, request.compute_name):
            data["phase"] = "provisioning"
            return JobHandle(backend=BACKEND_NAME, id=job_name, data=data)
        self._create_job(client, workspace, job_name, body)
        data.pop("job")
        return JobHandle(backend=BACKEND_NAME, id=job_name, data=data)

    def _register_code(self, client: JsonRestClient, workspace: str, request: StepJobRequest) -> str:
        """Upload the snapshot once per content hash and register it as a code version; its ARM id."""
        source = Path(request.source_dir)
        if not request.source_dir or not source.is_dir():
            raise InvalidRequest(f"steps[{request.step_name}]: an aml step needs a source_directory")
        source_hash = source.name
        prefix = f"code/{source_hash}"
        store = default_datastore()
        if not store.is_committed(prefix):
            store.upload_output(source, prefix)  # files, then the manifest: "uploaded" means complete
        name = f"mlpipe-{source_hash[:40]}"
        path = f"{workspace}/codes/{name}/versions/1"
        if client.call("GET", path, f"Azure ML code {name}", ok_missing=True)[1] is None:
            code_uri = store.container_client().url.rstrip("/") + "/" + prefix
            client.call("PUT", path, f"Azure ML code {name}",
                        body={"properties": {"codeUri": code_uri, "isAnonymous": True,
                                             "description": "mlpipe source snapshot"}})
        return path

    def job_body(self, request: StepJobRequest, code_id: str) -> dict:
        settings = {**request.compute_settings, **request.step_settings}
        datastores = dict(request.compute_settings.get("datastores") or {})

        def uri(datastore: str, path: str, folder: bool) -> str:
            return f"azureml://datastores/{datastores.get(datastore, datastore)}/paths/{path}{'/' if folder else ''}"

        inputs = {}
        for name, ref in request.inputs.items():
            is_file = not ref.is_pipeline_data and get_datastore(ref.datastore).exists(ref.path)
            inputs[name] = {"jobInputType": "uri_file" if is_file else "uri_folder", "mode": "ReadOnlyMount",
                            "uri": uri(ref.datastore, ref.path, not is_file)}
        outputs = {name: {"jobOutputType": "uri_folder", "uri": uri(DEFAULT_DATASTORE, prefix, True),
                          "mode": "ReadWriteMount"} for name, prefix in request.outputs.items()}
        outputs[LOG_OUTPUT] = {"jobOutputType": "uri_folder", "mode": "ReadWriteMount",
                               "uri": uri(DEFAULT_DATASTORE, _log_prefix(request), True)}
        environment = settings.get("environment")
        if not environment:
            raise InvalidRequest(f"steps[{request.step_name}]: an aml step needs an environment "
                                 "(settings.environment or the compute's environment)")
        properties = {
            "jobType": "Command",
            "displayName": request.step_name,
            "experimentName": str(settings.get("experiment_name") or "mlpipe"),
            "codeId": code_id,
            "command": self.command(request),
            "environmentId": _environment_id(str(environment), self._workspace(request.compute_settings)),
            "environmentVariables": dict(request.environment),
            "inputs": inputs,
            "outputs": outputs,
            "tags": {"mlpipe.runId": request.run_id, "mlpipe.step": request.step_name,
                     "mlpipe.attempt": str(request.attempt)},
            "resources": {"instanceCount": int(settings.get("instance_count", 1))},
        }
        if settings.get("cluster"):
            properties["computeId"] = f"{self._workspace(request.compute_settings)}/computes/{settings['cluster']}"
        timeout = settings.get("timeout_seconds") or request.timeout_seconds
        if timeout:
            properties["limits"] = {"jobLimitsType": "Command", "timeout": f"PT{int(timeout)}S"}
        return {"properties": properties}

    @staticmethod
    def command(request: StepJobRequest) -> str:
        """bash: the script with its arguments ({inputs.X} -> ${{inputs.X}}), console and metrics
        captured in the hidden log output, the script's exit code kept."""
        script = Path(request.script)
        try:
            relative = script.relative_to(request.source_dir).as_posix()
        except ValueError as error:
            raise InvalidRequest(f"steps[{request.step_name}].script_name: must be inside the source directory") \
                from error
        arguments = [DATA_PLACEHOLDER.sub(lambda m: "${{" + m.group(1) + "." + m.group(2) + "}}", a)
                     for a in request.arguments]
        # Azure ML replaces ${{...}} textually before bash runs, so quoting keeps them working.
        quoted = " ".join(shlex.quote(part) for part in [relative, *arguments])
        log_dir = "${{outputs." + LOG_OUTPUT + "}}"
        return (f"mkdir -p {log_dir} && set -o pipefail && "
                f"MLPIPE_METRICS_FILE={log_dir}/metrics.jsonl python {quoted} 2>&1 | tee {log_dir}/log.txt")

    def _needs_cluster(self, client: JsonRestClient, workspace: str, settings: Mapping[str, Any], compute: str) -> bool:
        """With `provision`, create the AmlCompute cluster if it does not exist; True while it is not ready."""
        provision, cluster = settings.get("provision"), settings.get("cluster")
        if not provision or not cluster:
            return False
        path = f"{workspace}/computes/{cluster}"
        current = client.call("GET", path, f"Azure ML compute {cluster}", ok_missing=True)[1]
        if current is None:
            spec = dict(provision)
            body = {"location": spec.get("location"), "properties": {
                "computeType": "AmlCompute",
                "properties": {"vmSize": spec.get("vm_size", "STANDARD_DS3_V2"),
                               "vmPriority": spec.get("vm_priority", "Dedicated"),
                               "scaleSettings": {"minNodeCount": int(spec.get("min_nodes", 0)),
                                                 "maxNodeCount": int(spec.get("max_nodes", 1)),
                                                 "nodeIdleTimeBeforeScaleDown":
                                                     f"PT{int(spec.get('idle_seconds', 120))}S"}}}}
            if not body["location"]:
                raise InvalidRequest(f"computes.{compute}.provision.location: required to create cluster '{cluster}'")
            client.call("PUT", path, f"Azure ML compute {cluster}", body=body)
            return True
        return _provisioning_state(current) != "Succeeded"

    def _create_job(self, client: JsonRestClient, workspace: str, job_name: str, body: dict) -> None:
        try:
            client.call("PUT", f"{workspace}/jobs/{job_name}", f"Azure ML job {job_name}", body=body)
        except ServiceError as error:
            # Created by a request whose answer was lost, then retried: it exists, which is what we want.
            if error.status != 409 and "already exists" not in error.message.lower():
                raise
            found = client.call("GET", f"{workspace}/jobs/{job_name}", f"Azure ML job {job_name}", ok_missing=True)[1]
            if found is None:
                raise

    # ----- poll ----------------------------------------------------------------------------

    def poll(self, handle: JobHandle, wait_seconds: float = 0.0) -> JobStatus:
        refused = refusal_status(handle)
        if refused is not None:
            return refused
        settings = handle.data.get("compute", {})
        client = self._client(settings, handle.data.get("computeName", ""))
        workspace = self._workspace(settings)
        try:
            _, job = client.call("GET", f"{workspace}/jobs/{handle.id}", f"Azure ML job {handle.id}",
                                 ok_missing=True)
            if job is None and handle.data.get("phase") == "provisioning":
                # The job waits for its cluster (this handle is the one submit made: the job may exist already).
                return self._poll_provisioning(client, workspace, handle)
        except TransientError as error:
            log.warning("%s; will poll again", error.message)
            return JobStatus(state="Running")
        except ComputeError as error:  # permanent (credential revoked, workspace gone): the step fails with it
            return JobStatus(state="Failed", error=error.message)
        if job is None:
            return JobStatus(state="Failed", error=f"Azure ML job {handle.id} no longer exists")
        status = (job.get("properties") or {}).get("status")
        state = map_job_status(status)
        if state == "Running":
            self._log_so_far(handle, status)
            return JobStatus(state="Running")
        text, metrics = self._job_log(handle)
        save_log(handle.data.get("runId", ""), handle.data.get("step", ""),
                 f"Azure ML job {handle.id}: {status}\n{_studio_url(job)}{text}")
        if state == "Completed":
            commit_written_outputs(handle.data.get("outputs", {}))
            return JobStatus(state="Completed", metrics=metrics, outputs=dict(handle.data.get("outputs", {})))
        tail = "\n".join(text.strip().splitlines()[-STDERR_TAIL_LINES:])
        error = f"Azure ML job {handle.id} {status}" + (f"; last lines of output:\n{tail}" if tail else "")
        return JobStatus(state=state, metrics=metrics, error=redact(error))

    def _poll_provisioning(self, client: JsonRestClient, workspace: str, handle: JobHandle) -> JobStatus:
        cluster = handle.data["job"]["properties"]["computeId"].rsplit("/", 1)[-1]
        current = client.call("GET", f"{workspace}/computes/{cluster}", f"Azure ML compute {cluster}",
                              ok_missing=True)[1]
        state = _provisioning_state(current) if current is not None else "Missing"
        if state in ("Failed", "Missing", "Canceled"):
            errors = (current or {}).get("properties", {}).get("provisioningErrors") or []
            detail = "; ".join(str((e.get("error") or {}).get("message", e)) for e in errors)
            return JobStatus(state="Failed", error=redact(f"Azure ML compute {cluster} provisioning {state}"
                                                          + (f": {detail}" if detail else "")))
        if state != "Succeeded":
            return JobStatus(state="Running")
        self._create_job(client, workspace, handle.id, handle.data["job"])
        return JobStatus(state="Running")

    def _log_so_far(self, handle: JobHandle, status: str | None) -> None:
        """The console output written so far (the hidden output is a read-write mount, so it grows
        while the job runs) becomes the step log: `mlpipe runs logs` follows a running job."""
        try:
            text = default_datastore().read_bytes(f"{handle.data.get('logPrefix', '')}/log.txt")
        except NotFound:
            return
        except Exception as error:  # noqa: BLE001 - only a progress view; the final log is written at the end
            log.debug("log of Azure ML job %s not readable yet: %s", handle.id, redact(str(error)))
            return
        save_log(handle.data.get("runId", ""), handle.data.get("step", ""),
                 f"Azure ML job {handle.id}: {status}\n" + text.decode("utf-8", errors="replace"))

    def _job_log(self, handle: JobHandle) -> tuple[str, dict]:
        store = default_datastore()
        prefix = handle.data.get("logPrefix", "")
        try:
            text = store.read_bytes(f"{prefix}/log.txt").decode("utf-8", errors="replace")
        except NotFound:
            text = ""
        try:
            metrics = parse_metrics(store.read_bytes(f"{prefix}/metrics.jsonl").decode("utf-8", errors="replace"))
        except NotFound:
            metrics = {}
        return text, metrics

    # ----- cancel and logs -----------------------------------------------------------------

    def cancel(self, handle: JobHandle) -> None:
        """POST .../jobs/{name}/cancel (asynchronous: CancelRequested, then Canceled); a job that
        ended or never got created is left as it is."""
        if refusal_status(handle) is not None:
            return  # nothing was started
        settings = handle.data.get("compute", {})
        client = self._client(settings, handle.data.get("computeName", ""))
        path = f"{self._workspace(settings)}/jobs/{handle.id}"
        client.cancel(f"{path}/cancel", f"Azure ML cancel of job {handle.id}")

    def fetch_logs(self, handle: JobHandle) -> str:
        return remote_log(handle, lambda: self._job_log(handle)[0])


# ----- helpers ----------------------------------------------------------------------------


def _log_prefix(request: StepJobRequest) -> str:
    return f"runs/{request.run_id}/{request.step_name}/.mlpipe/a{request.attempt}"


def _environment_id(environment: str, workspace: str) -> str:
    """`azureml:name:version` or `name:version` -> the workspace environment's ARM id; an ARM id as is."""
    if environment.startswith("/"):
        return environment
    text = environment.removeprefix("azureml:")
    name, _, version = text.partition(":")
    if not version:
        raise InvalidRequest(f"environment {environment!r}: use azureml:NAME:VERSION or an ARM id")
    if name.startswith("AzureML-"):  # curated environments live in the azureml registry
        return f"azureml://registries/azureml/environments/{name}/versions/{version}"
    return f"{workspace}/environments/{name}/versions/{version}"


def _provisioning_state(compute: Mapping[str, Any]) -> str:
    return str((compute.get("properties") or {}).get("provisioningState") or "Unknown")


def _studio_url(job: Mapping[str, Any]) -> str:
    services = (job.get("properties") or {}).get("services") or {}
    studio = (services.get("Studio") or {}).get("endpoint")
    return f"studio: {studio}\n" if studio else ""
