"""Azure Databricks: a `databricks` step becomes a one-time run (Jobs API `runs/submit`) via databricks-sdk.

Compute entry (`computes.NAME`, type databricks), all non-secret:
    host: https://adb-123.4.azuredatabricks.net      # required
    token_setting: DATABRICKS_PAT                     # or Azure AD: credential / managed_identity_client_id /
                                                      #   tenant_id + client_id + client_secret_setting
    existing_cluster_id: 0101-abc                     # or new_cluster: {spark_version, node_type, num_workers}
    storage_uri_scheme: abfss                         # abfss | wasbs | https (see shared/compute/remote.py)
    timeout_seconds: 3600

Step settings (`steps[].settings`): notebook_path | python_script_path, notebook_params (dict),
parameters (list, before the step's arguments), existing_cluster_id | new_cluster (or flat
spark_version / node_type / num_workers), run_name, timeout_seconds, libraries.

Data: `{inputs.X}` / `{outputs.Y}` in arguments and notebook_params become storage URIs; a notebook
also gets widgets `input_X` / `output_Y`. A notebook's arguments are `--name value` pairs that
become notebook parameters. Outputs written under the output URIs are committed when the run
succeeds. A notebook may return metrics with `dbutils.notebook.exit(json.dumps({"auc": 0.9}))`.

Every submit carries an idempotency token derived from run, step and attempt: Databricks
guarantees one run per token, so a replayed activity (or a retried submit whose answer was lost)
gets the same run back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from shared.compute.base import JobHandle, JobStatus, StepJobRequest, parse_metrics, substitute_data_placeholders
from shared.compute.client_cache import ClientCache
from shared.compute.remote import (
    commit_written_outputs,
    idempotency_key,
    input_uris,
    output_uris,
    refusal_status,
    remote_log,
    save_log,
    submit_or_refuse,
)
from shared.compute.retry import Transient, is_connection_error, retry_call
from shared.credentials import AUTH_KEYS, azure_credential, read_secret
from shared.errors import ComputeError, InvalidRequest, MlpipeError, TransientError
from shared.redact import redact

log = logging.getLogger("mlpipe.compute.databricks")

BACKEND_NAME = "databricks"
# The Azure Databricks first-party application id: the resource of Azure AD tokens for a workspace.
AZURE_DATABRICKS_SCOPE = "2ff814a6-3304-4ab8-85cb-cd0e6f879c1d/.default"
# Compute settings a handle keeps so poll/cancel can rebuild the client (all non-secret).
_CLIENT_KEYS = ("host", "retry_timeout_seconds", "http_timeout_seconds", *AUTH_KEYS)
_RUNNING_STATES = {"QUEUED", "PENDING", "RUNNING", "TERMINATING", "BLOCKED", "WAITING_FOR_RETRY", "WAITING"}
_SUCCESS_RESULTS = {"SUCCESS", "SUCCESS_WITH_FAILURES"}
_CANCELED_RESULTS = {"CANCELED", "CANCELLED", "UPSTREAM_CANCELED"}


def map_run_state(life_cycle: str | None, result: str | None, message: str = "") -> tuple[str, str | None]:
    """(mlpipe JobState, error) for a Databricks life_cycle_state / result_state pair.

    New states may appear (Databricks says so): an unknown non-terminal life cycle is Running,
    an unknown result of a terminated run is Failed naming it.
    """
    life_cycle = (life_cycle or "").upper()
    result = (result or "").upper()
    detail = f": {message}" if message else ""
    if life_cycle in ("TERMINATED", "SKIPPED", "INTERNAL_ERROR") or (result and life_cycle not in _RUNNING_STATES):
        if result in _SUCCESS_RESULTS and life_cycle == "TERMINATED":
            return "Completed", None
        if result in _CANCELED_RESULTS:
            return "Canceled", f"Databricks run canceled{detail}"
        if life_cycle == "SKIPPED":
            return "Failed", f"Databricks skipped the run{detail}"
        if life_cycle == "INTERNAL_ERROR":
            return "Failed", f"Databricks internal error{detail}"
        return "Failed", f"Databricks run {result or life_cycle}{detail}"
    return "Running", None


def _classify(error: BaseException) -> Transient | None:
    from databricks.sdk.errors import (
        DatabricksError,
        DeadlineExceeded,
        InternalError,
        TemporarilyUnavailable,
        TooManyRequests,
    )

    if isinstance(error, (TooManyRequests, TemporarilyUnavailable, InternalError, DeadlineExceeded)):
        return Transient(f"{type(error).__name__}: {error}", getattr(error, "retry_after_secs", None))
    if type(error) is DatabricksError and not getattr(error, "error_code", None) and (
            "502" in str(error) or "Bad Gateway" in str(error)):
        return Transient(f"bad gateway: {error}")
    if isinstance(error, TimeoutError) or is_connection_error(error):  # the SDK's own retries ran out
        return Transient(type(error).__name__)
    return None


class _AzureIdentityStrategy:
    """databricks-sdk CredentialsStrategy backed by an azure-core TokenCredential (Azure AD token
    for the Azure Databricks resource): managed identity in Azure, DefaultAzureCredential locally."""

    def __init__(self, credential):
        self._credential = credential

    def auth_type(self) -> str:
        return "mlpipe-azure-identity"

    def __call__(self, cfg) -> Callable[[], dict]:
        def headers() -> dict:
            return {"Authorization": f"Bearer {self._credential.get_token(AZURE_DATABRICKS_SCOPE).token}"}

        return headers


def build_workspace_client(settings: Mapping[str, Any], compute: str):
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.config import Config
    from databricks.sdk.credentials_provider import CredentialsStrategy

    host = settings.get("host")
    if not host:
        raise InvalidRequest(f"compute '{compute}': a databricks compute needs 'host' (the workspace URL)")
    options = dict(host=str(host), retry_timeout_seconds=int(settings.get("retry_timeout_seconds", 30)),
                   http_timeout_seconds=float(settings.get("http_timeout_seconds", 60)))
    if settings.get("token_setting"):
        config = Config(token=read_secret(settings["token_setting"], compute), auth_type="pat", **options)
    else:
        strategy = _AzureIdentityStrategy(azure_credential(settings, compute))
        CredentialsStrategy.register(_AzureIdentityStrategy)
        config = Config(credentials_strategy=strategy, **options)
    return WorkspaceClient(config=config)


class DatabricksBackend:
    name = BACKEND_NAME

    def __init__(self, client_factory: Callable[[Mapping[str, Any], str], Any] = build_workspace_client):
        self._clients = ClientCache(_CLIENT_KEYS, client_factory)

    # ----- plumbing ------------------------------------------------------------------------

    def _client(self, settings: Mapping[str, Any], compute: str):
        return self._clients.get(settings, compute)

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        """fn() with transient errors retried; Databricks errors become ComputeError (redacted)."""
        from databricks.sdk.errors import DatabricksError

        try:
            return retry_call(fn, _classify, what)
        except MlpipeError:
            raise
        except DatabricksError as error:
            code = getattr(error, "error_code", None) or type(error).__name__
            raise ComputeError(redact(f"{what}: Databricks answered {code}: {error}")) from error
        except ValueError as error:  # the SDK's config/auth errors
            raise ComputeError(redact(f"{what}: {error}")) from error

    # ----- submit --------------------------------------------------------------------------

    def submit(self, request: StepJobRequest) -> JobHandle:
        """Start the job; a refusal (bad settings, the service's 4xx) answers a handle that polls Failed."""
        return submit_or_refuse(BACKEND_NAME, request, lambda: self._submit(request))

    def _submit(self, request: StepJobRequest) -> JobHandle:
        settings = {**request.compute_settings}
        body = self.submit_body(request)
        client = self._client(settings, request.compute_name)
        what = f"Databricks submit of step '{request.step_name}'"
        waiter = self._call(what, lambda: client.jobs.submit(**body))
        run_id = waiter.response.run_id if getattr(waiter, "response", None) is not None else waiter.run_id
        return JobHandle(backend=BACKEND_NAME, id=str(run_id), data={
            "compute": {k: settings[k] for k in _CLIENT_KEYS if k in settings},
            "computeName": request.compute_name, "runId": request.run_id, "step": request.step_name,
            "outputs": dict(request.outputs), "idempotencyToken": body["idempotency_token"],
        })

    def submit_body(self, request: StepJobRequest) -> dict:
        """Keyword arguments of `WorkspaceClient.jobs.submit` for this step (SDK dataclasses)."""
        from databricks.sdk.service import compute as dbx_compute
        from databricks.sdk.service import jobs

        step = request.step_settings
        defaults = request.compute_settings
        scheme = step.get("storage_uri_scheme") or defaults.get("storage_uri_scheme")
        inputs, outputs = input_uris(request, scheme), output_uris(request, scheme)
        arguments = substitute_data_placeholders(request.arguments, inputs, outputs)
        task = jobs.SubmitTask(task_key="main")
        if step.get("notebook_path"):
            params = {f"input_{n}": u for n, u in inputs.items()} | {f"output_{n}": u for n, u in outputs.items()}
            declared = step.get("notebook_params") or {}
            params |= {str(k): _substitute(str(v), inputs, outputs) for k, v in declared.items()}
            params |= _pairs(arguments, request.step_name)
            task.notebook_task = jobs.NotebookTask(notebook_path=step["notebook_path"], base_parameters=params)
        elif step.get("python_script_path"):
            leading = [_substitute(str(v), inputs, outputs) for v in step.get("parameters") or []]
            task.spark_python_task = jobs.SparkPythonTask(python_file=step["python_script_path"],
                                                          parameters=leading + arguments)
        else:
            raise InvalidRequest(f"steps[{request.step_name}].settings: a databricks step needs notebook_path "
                                 "or python_script_path")
        cluster_id, new_cluster = _cluster(step, defaults, request.step_name)
        if cluster_id:
            task.existing_cluster_id = cluster_id
        else:
            task.new_cluster = dbx_compute.ClusterSpec(
                spark_version=str(new_cluster["spark_version"]), node_type_id=str(new_cluster["node_type"]),
                num_workers=int(new_cluster["num_workers"]),
                spark_conf=new_cluster.get("spark_conf"), spark_env_vars=new_cluster.get("spark_env_vars"))
        if step.get("libraries"):
            task.libraries = [dbx_compute.Library.from_dict(item) for item in step["libraries"]]
        timeout = step.get("timeout_seconds") or defaults.get("timeout_seconds") or request.timeout_seconds
        return {
            "run_name": str(step.get("run_name") or f"mlpipe {request.run_id} {request.step_name}"),
            "tasks": [task],
            "idempotency_token": idempotency_key(request),
            "timeout_seconds": int(timeout) if timeout else None,
        }

    # ----- poll ----------------------------------------------------------------------------

    def poll(self, handle: JobHandle, wait_seconds: float = 0.0) -> JobStatus:
        """One `runs/get` (remote runs are followed by the orchestrator's durable timers, not by
        waiting here). A transient failure answers Running: the next poll asks again."""
        refused = refusal_status(handle)
        if refused is not None:
            return refused
        client = self._client(handle.data.get("compute", {}), handle.data.get("computeName", ""))
        try:
            run = self._call(f"Databricks run {handle.id}", lambda: client.jobs.get_run(int(handle.id)))
        except TransientError as error:
            log.warning("%s; will poll again", error.message)
            return JobStatus(state="Running")
        except ComputeError as error:
            if _is_not_found(error):
                return JobStatus(state="Failed", error=f"Databricks run {handle.id} no longer exists")
            # A permanent error (the token was revoked, the workspace is gone): the step fails with it.
            return JobStatus(state="Failed", error=error.message)
        life_cycle, result, message = _run_state(run)
        state, error = map_run_state(life_cycle, result, message)
        if state == "Running":
            return JobStatus(state="Running")
        output = self._output(client, run)
        metrics = _metrics(output)
        save_log(handle.data.get("runId", ""), handle.data.get("step", ""), _log_text(handle, run, output))
        if state == "Completed":
            commit_written_outputs(handle.data.get("outputs", {}))
            return JobStatus(state="Completed", metrics=metrics, outputs=dict(handle.data.get("outputs", {})))
        detail = _error_text(output)
        return JobStatus(state=state, metrics=metrics,
                         error=redact(f"{error}; {detail}" if detail else error or "Databricks run failed"))

    def _output(self, client, run) -> Any:
        """`runs/get-output` of the (single) task run; None if it cannot be had (it is only detail)."""
        tasks = getattr(run, "tasks", None) or []
        task_run_id = tasks[0].run_id if tasks and tasks[0].run_id else run.run_id
        try:
            return self._call(f"Databricks output of run {task_run_id}",
                              lambda: client.jobs.get_run_output(int(task_run_id)))
        except MlpipeError as error:
            log.warning("%s", error.message)
            return None

    # ----- cancel and logs -----------------------------------------------------------------

    def cancel(self, handle: JobHandle) -> None:
        """`runs/cancel`: asynchronous on Databricks and a no-op for an ended run; so is this."""
        if refusal_status(handle) is not None:
            return  # nothing was started
        client = self._client(handle.data.get("compute", {}), handle.data.get("computeName", ""))
        try:
            self._call(f"Databricks cancel of run {handle.id}", lambda: client.jobs.cancel_run(int(handle.id)))
        except ComputeError as error:
            if not _is_not_found(error) and "INVALID_STATE" not in error.message:
                raise

    def fetch_logs(self, handle: JobHandle) -> str:
        def live() -> str:
            client = self._client(handle.data.get("compute", {}), handle.data.get("computeName", ""))
            run = self._call(f"Databricks run {handle.id}", lambda: client.jobs.get_run(int(handle.id)))
            life_cycle, result, message = _run_state(run)
            if map_run_state(life_cycle, result, message)[0] == "Running":
                page = run.run_page_url or ""
                return redact(f"Databricks run {handle.id} is {life_cycle}: {message}\n{page}".strip())
            return redact(_log_text(handle, run, self._output(client, run)))

        return remote_log(handle, live)


# ----- helpers ----------------------------------------------------------------------------


def _substitute(text: str, inputs: Mapping[str, str], outputs: Mapping[str, str]) -> str:
    return substitute_data_placeholders([text], inputs, outputs)[0]


def _pairs(arguments: list[str], step: str) -> dict[str, str]:
    """Notebook parameters from `--name value` arguments."""
    if len(arguments) % 2 or any(not a.startswith("--") for a in arguments[::2]):
        raise InvalidRequest(f"steps[{step}].arguments: a notebook step's arguments must be '--name value' pairs")
    return {name[2:]: value for name, value in zip(arguments[::2], arguments[1::2], strict=True)}


def _cluster(step: Mapping[str, Any], defaults: Mapping[str, Any], name: str) -> tuple[str | None, dict]:
    """(existing cluster id, or None and a new-cluster spec); the step's choice before the compute's."""
    for source in (step, defaults):
        if source.get("existing_cluster_id"):
            return str(source["existing_cluster_id"]), {}
        spec = dict(source.get("new_cluster") or {})
        for key in ("spark_version", "node_type", "num_workers"):
            if key in source:
                spec[key] = source[key]
        if spec:
            missing = [k for k in ("spark_version", "node_type", "num_workers") if k not in spec]
            if missing:
                raise InvalidRequest(f"steps[{name}].settings.new_cluster: missing {', '.join(missing)}")
            return None, spec
    raise InvalidRequest(f"steps[{name}].settings: a databricks step needs existing_cluster_id or new_cluster "
                         "(on the step or its compute)")


def _enum(value: Any) -> str | None:
    return None if value is None else str(getattr(value, "value", value))


def _run_state(run) -> tuple[str | None, str | None, str]:
    state = getattr(run, "state", None)
    if state is not None and state.life_cycle_state is not None:
        return _enum(state.life_cycle_state), _enum(state.result_state), state.state_message or ""
    status = getattr(run, "status", None)  # the newer RunStatus form
    if status is not None and status.state is not None:
        details = status.termination_details
        result = _enum(details.type) if details is not None and details.type is not None else None
        message = (details.message or "") if details is not None else ""
        return _enum(status.state), result, message
    return None, None, ""


def _metrics(output) -> dict:
    notebook = getattr(output, "notebook_output", None) if output is not None else None
    if notebook is None or not notebook.result:
        return {}
    return parse_metrics(notebook.result)


def _error_text(output) -> str:
    if output is None:
        return ""
    return (output.error or "").strip()


def _log_text(handle: JobHandle, run, output) -> str:
    life_cycle, result, message = _run_state(run)
    lines = [f"Databricks run {handle.id}: {life_cycle} {result or ''} {message}".rstrip()]
    if getattr(run, "run_page_url", None):
        lines.append(f"run page: {run.run_page_url}")
    if output is not None:
        if output.notebook_output is not None and output.notebook_output.result:
            lines += ["--- notebook result ---", output.notebook_output.result]
        if output.logs:
            lines += ["--- logs ---", output.logs]
        if output.error or output.error_trace:
            lines += ["--- error ---", output.error or "", output.error_trace or ""]
    return "\n".join(lines).rstrip() + "\n"


def _is_not_found(error: ComputeError) -> bool:
    return any(code in error.message for code in ("RESOURCE_DOES_NOT_EXIST", "NotFound", "ResourceDoesNotExist"))
