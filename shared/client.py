"""Python client of the mlpipe HTTP API, shaped like an Azure SDK client (stdlib transport only).

    client = PipelineClient("http://127.0.0.1:7071", credential="<function key>")
    pipeline = client.get_pipeline(pipeline_id)               # typed models (pydantic) ...
    poller = client.begin_submit_pipeline(pipeline.Id, "nightly", {"rate": 0.5})
    run = poller.result(timeout=600)                          # ... with attribute access (run.Status)
    run["Status"]                                             # ... and mapping access, like azure-core models

`credential` is the function key as a string or an object with a `.key` attribute
(`azure.core.credentials.AzureKeyCredential`); it is read at every request, so a rotated key is
picked up. Errors come back as `ApiError` (subclasses by status: `ResourceNotFoundError`,
`ResourceExistsError`, `ClientAuthenticationError`) carrying the API's error code; the key never
appears in an error message, a repr or a URL (it travels in the x-functions-key header).

Method names follow the Azure SDK guidelines: `get_`, `list_`, `create_`, `begin_` (long-running:
returns a `RunPoller`). The older names (`submit`, `set_pipeline_enabled`, `wait_for_run`, ...) stay.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from pydantic import BaseModel

from shared.api_models import Datastore, Endpoint, Health, Pipeline, Run
from shared.errors import InvalidRequest, MlpipeError
from shared.statuses import RunStatus

DEFAULT_HOST = "http://127.0.0.1:7071"
M = TypeVar("M", bound=BaseModel)


class ApiError(MlpipeError):
    """The API answered with an error status: `.status` / `.status_code`, `.code`, `.api_message`."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(f"{status} {code}: {message}", code=code)
        self.status = status
        self.api_message = message

    @property
    def status_code(self) -> int:
        return self.status

    @property
    def error(self) -> dict:
        """`{"code", "message"}` as the API sent it (azure-core's HttpResponseError.error)."""
        return {"code": self.code, "message": self.api_message}


class ClientAuthenticationError(ApiError):
    """401: no key or a wrong key."""


class ResourceNotFoundError(ApiError):
    """404."""


class ResourceExistsError(ApiError):
    """409: a conflict (e.g. EndpointExists, PipelineDisabled, EndpointDisabled)."""


_ERRORS_BY_STATUS = {401: ClientAuthenticationError, 404: ResourceNotFoundError, 409: ResourceExistsError}


class HostUnreachable(MlpipeError):
    code = "HostUnreachable"


def _key_of(credential: Any) -> str | None:
    if credential is None or isinstance(credential, str):
        return credential or None
    key = getattr(credential, "key", None)
    if isinstance(key, str):
        return key
    raise TypeError("credential must be a function key (str) or an object with a .key attribute, "
                    "e.g. azure.core.credentials.AzureKeyCredential")


class RunPoller:
    """A submitted run followed to its end (azure-core LROPoller shape): `status()`, `done()`,
    `wait(timeout)`, `result(timeout)`; `initial` is the run as the submit returned it."""

    def __init__(self, client: PipelineClient, initial: Run, poll_seconds: float = 0.5):
        self._client = client
        self.initial = initial
        self._current = initial
        self._poll_seconds = poll_seconds

    @property
    def run_id(self) -> str:
        return self.initial.Id

    def polling_interval(self) -> float:
        return self._poll_seconds

    def _refresh(self) -> Run:
        self._current = self._client.get_run(self.run_id)
        return self._current

    def status(self) -> str:
        """The run's current status (one request)."""
        return self._refresh().Status

    def done(self) -> bool:
        return RunStatus(self._current.Status).is_terminal or RunStatus(self.status()).is_terminal

    def wait(self, timeout: float | None = None) -> None:
        """Block until the run is terminal; TimeoutError after `timeout` seconds."""
        self._current = self._client.wait_for_run(self.run_id, poll_seconds=self._poll_seconds, timeout=timeout)

    def result(self, timeout: float | None = None) -> Run:
        """The finished run (Finished, Failed or Canceled; a failed run is returned, not raised)."""
        if not RunStatus(self._current.Status).is_terminal:
            self.wait(timeout)
        return self._current


LONG_POLL_SECONDS = 20.0  # one waiting request at a time (the host allows up to 30)


class PipelineClient:
    def __init__(self, endpoint: str = DEFAULT_HOST, credential: Any = None, timeout: float = 60.0, *,
                 key: str | None = None):
        self.endpoint = endpoint.rstrip("/")
        self._credential = credential if credential is not None else key
        _key_of(self._credential)  # fail early on an unusable credential
        self.timeout = timeout

    @property
    def _key(self) -> str | None:
        return _key_of(self._credential)

    def __repr__(self) -> str:  # never show the key
        return f"PipelineClient({self.endpoint!r})"

    def __enter__(self) -> PipelineClient:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        """Nothing to release (a connection per request); here for the Azure SDK client shape."""

    # --- transport -------------------------------------------------------------------------
    def request(self, method: str, path: str, *, body: Any = None, data: bytes | None = None,
                content_type: str = "application/json", query: dict | None = None,
                raw: bool = False) -> Any:
        """One API call; the JSON answer as plain data (or text with `raw`)."""
        url = f"{self.endpoint}{path}"
        if query:
            url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        headers = {"Accept": "application/json"}
        key = self._key
        if key:
            headers["x-functions-key"] = key
        if body is not None:
            data = json.dumps(body).encode("utf-8")
        if data is not None:
            headers["Content-Type"] = content_type
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                payload = response.read()
        except urllib.error.HTTPError as error:
            raise _api_error(error.code, error.read()) from None
        except (urllib.error.URLError, ConnectionError, TimeoutError) as error:
            raise HostUnreachable(f"cannot reach the mlpipe host at {self.endpoint}: "
                                  f"{getattr(error, 'reason', error)}") from None
        if raw:
            return payload.decode("utf-8", errors="replace")
        return json.loads(payload) if payload else None

    def _typed(self, model: type[M], method: str, path: str, **options) -> M:
        return model.model_validate(self.request(method, path, **options))

    def _typed_list(self, model: type[M], path: str, query: dict | None = None) -> list[M]:
        return [model.model_validate(item) for item in self.request("GET", path, query=query)["value"]]

    # --- host ------------------------------------------------------------------------------
    def health(self) -> Health:
        return self._typed(Health, "GET", "/api/health")

    def get_openapi(self) -> dict:
        return self.request("GET", "/api/openapi.json")

    def list_datastores(self) -> list[Datastore]:
        return self._typed_list(Datastore, "/api/datastores")

    # --- pipelines -------------------------------------------------------------------------
    def publish_package(self, zip_bytes: bytes, *, name: str | None = None, version: str | None = None,
                        description: str | None = None, private: bool = False) -> Pipeline:
        query = {"name": name, "version": version, "description": description,
                 "private": "true" if private else None}
        return self._typed(Pipeline, "POST", "/api/pipelines", data=zip_bytes, content_type="application/zip",
                           query=query)

    def publish_definition(self, definition: dict, *, name: str | None = None, version: str | None = None,
                           description: str | None = None) -> Pipeline:
        body = {"name": name or definition.get("name"), "version": version,
                "description": description if description is not None else definition.get("description"),
                "definition": definition}
        return self._typed(Pipeline, "POST", "/api/pipelines", body=body)

    def get_pipeline(self, pipeline_id: str) -> Pipeline:
        return self._typed(Pipeline, "GET", f"/api/pipelines/{_quote(pipeline_id)}")

    def list_pipelines(self, status: str = "Active") -> list[Pipeline]:
        return self._typed_list(Pipeline, "/api/pipelines", {"status": status})

    def set_pipeline_enabled(self, pipeline_id: str, enabled: bool) -> Pipeline:
        action = "enable" if enabled else "disable"
        return self._typed(Pipeline, "POST", f"/api/pipelines/{_quote(pipeline_id)}/{action}")

    def disable_pipeline(self, pipeline_id: str) -> Pipeline:
        return self.set_pipeline_enabled(pipeline_id, False)

    def enable_pipeline(self, pipeline_id: str) -> Pipeline:
        return self.set_pipeline_enabled(pipeline_id, True)

    def submit(self, pipeline_id: str, experiment_name: str, parameters: dict | None = None, **fields) -> Run:
        """Submit a run of a published pipeline; `fields` are other submit body fields (Tags=..., RunSource=...)."""
        body = {"ExperimentName": experiment_name, "ParameterAssignments": parameters or {}, **fields}
        return self._typed(Run, "POST", f"/api/pipelines/{_quote(pipeline_id)}/submit", body=body)

    submit_pipeline = submit

    def begin_submit_pipeline(self, pipeline_id: str, experiment_name: str, parameters: dict | None = None, *,
                              poll_seconds: float = 0.5, **fields) -> RunPoller:
        return RunPoller(self, self.submit(pipeline_id, experiment_name, parameters, **fields), poll_seconds)

    # --- endpoints -------------------------------------------------------------------------
    def create_endpoint(self, name: str, pipeline_id: str, description: str | None = None) -> Endpoint:
        body = {"name": name, "pipelineId": pipeline_id, "description": description}
        return self._typed(Endpoint, "POST", "/api/endpoints", body=body)

    def list_endpoints(self, status: str = "Active") -> list[Endpoint]:
        return self._typed_list(Endpoint, "/api/endpoints", {"status": status})

    def get_endpoint(self, name: str) -> Endpoint:
        return self._typed(Endpoint, "GET", f"/api/endpoints/{_quote(name)}")

    def add_endpoint_version(self, name: str, pipeline_id: str) -> Endpoint:
        return self._typed(Endpoint, "POST", f"/api/endpoints/{_quote(name)}/versions",
                           body={"pipelineId": pipeline_id})

    def set_endpoint_default(self, name: str, version: str) -> Endpoint:
        return self._typed(Endpoint, "PUT", f"/api/endpoints/{_quote(name)}/default",
                           body={"version": str(version)})

    def set_endpoint_enabled(self, name: str, enabled: bool) -> Endpoint:
        action = "enable" if enabled else "disable"
        return self._typed(Endpoint, "POST", f"/api/endpoints/{_quote(name)}/{action}")

    def disable_endpoint(self, name: str) -> Endpoint:
        return self.set_endpoint_enabled(name, False)

    def enable_endpoint(self, name: str) -> Endpoint:
        return self.set_endpoint_enabled(name, True)

    def submit_endpoint(self, name: str, experiment_name: str, parameters: dict | None = None, *,
                        pipeline_version: str | None = None, **fields) -> Run:
        """Submit to the endpoint's default version, or to `pipeline_version`."""
        body = {"ExperimentName": experiment_name, "ParameterAssignments": parameters or {}, **fields}
        if pipeline_version is not None:
            body["PipelineVersion"] = str(pipeline_version)
        return self._typed(Run, "POST", f"/api/endpoints/{_quote(name)}/submit", body=body)

    def begin_submit_endpoint(self, name: str, experiment_name: str, parameters: dict | None = None, *,
                              pipeline_version: str | None = None, poll_seconds: float = 0.5,
                              **fields) -> RunPoller:
        run = self.submit_endpoint(name, experiment_name, parameters, pipeline_version=pipeline_version, **fields)
        return RunPoller(self, run, poll_seconds)

    # --- schedules (plain JSON dicts) ---------------------------------------------------------
    def create_schedule(self, body: dict) -> dict:
        """POST /api/schedules: {"name", "pipelineId" | "endpointName", "experimentName", ...}."""
        return self.request("POST", "/api/schedules", body=body)

    def list_schedules(self, status: str = "All") -> list[dict]:
        return self.request("GET", "/api/schedules", query={"status": status})["value"]

    def get_schedule(self, name: str) -> dict:
        return self.request("GET", f"/api/schedules/{_quote(name)}")

    def set_schedule_enabled(self, name: str, enabled: bool) -> dict:
        return self.request("POST", f"/api/schedules/{_quote(name)}/{'enable' if enabled else 'disable'}")

    def delete_schedule(self, name: str) -> None:
        self.request("DELETE", f"/api/schedules/{_quote(name)}")

    # --- runs ------------------------------------------------------------------------------
    def get_run(self, run_id: str, *, include_steps: bool = True, wait_seconds: float | None = None) -> Run:
        """The run; with `wait_seconds` (up to 30) the host answers once it has ended or that long has passed."""
        query = {"includeSteps": None if include_steps else "false",
                 "waitSeconds": None if wait_seconds is None else f"{wait_seconds:g}"}
        return self._typed(Run, "GET", f"/api/runs/{_quote(run_id)}", query=query)

    def list_runs(self, *, experiment: str | None = None, status: str | None = None,
                  pipeline_id: str | None = None, endpoint_name: str | None = None, tag: str | None = None,
                  top: int | None = None, **query) -> list[Run]:
        """Runs newest first; `tag` is "key" or "key:value". Query names (pipelineId=...) work too."""
        filters = {"experiment": experiment, "status": status, "pipelineId": pipeline_id,
                   "endpointName": endpoint_name, "tag": tag, "top": top}
        for name, value in query.items():
            filters[name] = value
        return self._typed_list(Run, "/api/runs", filters)

    def cancel_run(self, run_id: str) -> Run:
        return self._typed(Run, "POST", f"/api/runs/{_quote(run_id)}/cancel")

    def begin_cancel_run(self, run_id: str, *, poll_seconds: float = 0.5) -> RunPoller:
        return RunPoller(self, self.cancel_run(run_id), poll_seconds)

    def update_run_tags(self, run_id: str, tags: dict[str, str | None]) -> Run:
        """Add or change tags; a None value removes that tag."""
        return self._typed(Run, "PATCH", f"/api/runs/{_quote(run_id)}/tags", body=tags)

    def get_step_logs(self, run_id: str, step: str, attempt: int | None = None) -> str:
        return self.request("GET", f"/api/runs/{_quote(run_id)}/steps/{_quote(step)}/logs",
                            query={"attempt": attempt}, raw=True)

    def get_step_fingerprint(self, run_id: str, step: str) -> dict:
        return self.request("GET", f"/api/runs/{_quote(run_id)}/steps/{_quote(step)}/fingerprint")

    def wait_for_run(self, run_id: str, *, poll_seconds: float = 0.25, timeout: float | None = None,
                     on_update: Callable[[Run], None] | None = None) -> Run:
        """Wait until the run is terminal; `on_update(run)` sees every poll (with its steps).

        Without `on_update` the host is asked to answer when the run ends (`waitSeconds`, a long
        poll): the answer that shows the run ended carries its steps, so nothing is fetched after.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            started = time.monotonic()
            if on_update:
                run = self.get_run(run_id)
                on_update(run)
            else:
                wait = min(LONG_POLL_SECONDS, self.timeout / 2)  # well within this client's request timeout
                if deadline is not None:
                    wait = min(wait, max(0.0, deadline - started))
                run = self.get_run(run_id, wait_seconds=round(wait, 1))
            if RunStatus(run.Status).is_terminal:
                return run
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"run {run_id} still {run.Status} after {timeout:.0f}s")
            time.sleep(max(0.0, poll_seconds - (time.monotonic() - started)))  # an older host answers at once


def to_plain(value: Any) -> Any:
    """Models (and lists/dicts of them) as plain JSON data, e.g. for json.dumps."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", exclude_unset=True)
    if isinstance(value, list):
        return [to_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: to_plain(item) for key, item in value.items()}
    return value


def _quote(segment: str) -> str:
    return urllib.parse.quote(segment, safe="")


def _api_error(status: int, payload: bytes) -> ApiError:
    error_class = _ERRORS_BY_STATUS.get(status, ApiError)
    try:
        error = json.loads(payload)["error"]
        return error_class(status, error.get("code", "Error"), error.get("message", ""))
    except (ValueError, KeyError, TypeError, AttributeError):
        return error_class(status, "Error", payload[:500].decode("utf-8", errors="replace"))


def parse_param_assignments(pairs: Iterable[str]) -> dict:
    """`k=v` pairs from the command line; values are JSON when they parse (0.2, true), else text."""
    assignments = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise InvalidRequest(f"--param {pair!r}: expected NAME=VALUE")
        try:
            assignments[name] = json.loads(value)
        except ValueError:
            assignments[name] = value
    return assignments
