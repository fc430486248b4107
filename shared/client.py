"""A small HTTP client of the mlpipe API (stdlib only), used by the CLI, demos and benchmarks.

Errors come back as `ApiError` carrying the API's error code and HTTP status; the function key
never appears in an error message (it travels in the x-functions-key header, not the URL).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Iterable

from shared.errors import MlpipeError
from shared.statuses import RunStatus

DEFAULT_HOST = "http://127.0.0.1:7071"


class ApiError(MlpipeError):
    """The API answered with an error status."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(f"{status} {code}: {message}", code=code)
        self.status = status
        self.api_message = message


class HostUnreachable(MlpipeError):
    code = "HostUnreachable"


class PipelineClient:
    def __init__(self, endpoint: str = DEFAULT_HOST, key: str | None = None, timeout: float = 60.0):
        self.endpoint = endpoint.rstrip("/")
        self._key = key
        self.timeout = timeout

    def __repr__(self) -> str:  # never show the key
        return f"PipelineClient({self.endpoint!r})"

    # --- transport -------------------------------------------------------------------------
    def request(self, method: str, path: str, *, body: Any = None, data: bytes | None = None,
                content_type: str = "application/json", query: dict | None = None,
                raw: bool = False) -> Any:
        url = f"{self.endpoint}{path}"
        if query:
            url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        headers = {"Accept": "application/json"}
        if self._key:
            headers["x-functions-key"] = self._key
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
            raise HostUnreachable(f"cannot reach the mlpipe host at {self.endpoint}: {getattr(error, 'reason', error)}") from None
        if raw:
            return payload.decode("utf-8", errors="replace")
        return json.loads(payload) if payload else None

    # --- API -------------------------------------------------------------------------------
    def health(self) -> dict:
        return self.request("GET", "/api/health")

    def list_datastores(self) -> list[dict]:
        return self.request("GET", "/api/datastores")["value"]

    def publish_package(self, zip_bytes: bytes, *, name: str | None = None, version: str | None = None,
                        description: str | None = None, private: bool = False) -> dict:
        query = {"name": name, "version": version, "description": description, "private": "true" if private else None}
        return self.request("POST", "/api/pipelines", data=zip_bytes, content_type="application/zip", query=query)

    def publish_definition(self, definition: dict, *, name: str | None = None, version: str | None = None,
                           description: str | None = None) -> dict:
        body = {"name": name or definition.get("name"), "version": version,
                "description": description if description is not None else definition.get("description"),
                "definition": definition}
        return self.request("POST", "/api/pipelines", body=body)

    def get_pipeline(self, pipeline_id: str) -> dict:
        return self.request("GET", f"/api/pipelines/{_quote(pipeline_id)}")

    def list_pipelines(self, status: str = "Active") -> list[dict]:
        return self.request("GET", "/api/pipelines", query={"status": status})["value"]

    def set_pipeline_enabled(self, pipeline_id: str, enabled: bool) -> dict:
        action = "enable" if enabled else "disable"
        return self.request("POST", f"/api/pipelines/{_quote(pipeline_id)}/{action}")

    def submit(self, pipeline_id: str, experiment_name: str, parameters: dict | None = None, **fields) -> dict:
        body = {"ExperimentName": experiment_name, "ParameterAssignments": parameters or {}, **fields}
        return self.request("POST", f"/api/pipelines/{_quote(pipeline_id)}/submit", body=body)

    # endpoints
    def create_endpoint(self, name: str, pipeline_id: str, description: str | None = None) -> dict:
        body = {"name": name, "pipelineId": pipeline_id, "description": description}
        return self.request("POST", "/api/endpoints", body=body)

    def list_endpoints(self, status: str = "Active") -> list[dict]:
        return self.request("GET", "/api/endpoints", query={"status": status})["value"]

    def get_endpoint(self, name: str) -> dict:
        return self.request("GET", f"/api/endpoints/{_quote(name)}")

    def add_endpoint_version(self, name: str, pipeline_id: str) -> dict:
        return self.request("POST", f"/api/endpoints/{_quote(name)}/versions", body={"pipelineId": pipeline_id})

    def set_endpoint_default(self, name: str, version: str) -> dict:
        return self.request("PUT", f"/api/endpoints/{_quote(name)}/default", body={"version": str(version)})

    def set_endpoint_enabled(self, name: str, enabled: bool) -> dict:
        action = "enable" if enabled else "disable"
        return self.request("POST", f"/api/endpoints/{_quote(name)}/{action}")

    def submit_endpoint(self, name: str, experiment_name: str, parameters: dict | None = None, *,
                        pipeline_version: str | None = None, **fields) -> dict:
        body = {"ExperimentName": experiment_name, "ParameterAssignments": parameters or {}, **fields}
        if pipeline_version is not None:
            body["PipelineVersion"] = str(pipeline_version)
        return self.request("POST", f"/api/endpoints/{_quote(name)}/submit", body=body)

    def update_run_tags(self, run_id: str, tags: dict) -> dict:
        return self.request("PATCH", f"/api/runs/{_quote(run_id)}/tags", body=tags)

    def get_run(self, run_id: str) -> dict:
        return self.request("GET", f"/api/runs/{_quote(run_id)}")

    def list_runs(self, **filters) -> list[dict]:
        return self.request("GET", "/api/runs", query=filters)["value"]

    def cancel_run(self, run_id: str) -> dict:
        return self.request("POST", f"/api/runs/{_quote(run_id)}/cancel")

    def get_step_logs(self, run_id: str, step: str, attempt: int | None = None) -> str:
        return self.request("GET", f"/api/runs/{_quote(run_id)}/steps/{_quote(step)}/logs",
                            query={"attempt": attempt}, raw=True)

    def get_step_fingerprint(self, run_id: str, step: str) -> dict:
        return self.request("GET", f"/api/runs/{_quote(run_id)}/steps/{_quote(step)}/fingerprint")

    def wait_for_run(self, run_id: str, *, poll_seconds: float = 0.25, timeout: float | None = None,
                     on_update=None) -> dict:
        """Poll the run until it is terminal; `on_update(run)` sees every poll."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            run = self.get_run(run_id)
            if on_update:
                on_update(run)
            if RunStatus(run["Status"]).is_terminal:
                return run
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"run {run_id} still {run['Status']} after {timeout:.0f}s")
            time.sleep(poll_seconds)


def _quote(segment: str) -> str:
    return urllib.parse.quote(segment, safe="")


def _api_error(status: int, payload: bytes) -> ApiError:
    try:
        error = json.loads(payload)["error"]
        return ApiError(status, error.get("code", "Error"), error.get("message", ""))
    except (ValueError, KeyError, TypeError):
        return ApiError(status, "Error", payload[:500].decode("utf-8", errors="replace"))


def parse_param_assignments(pairs: Iterable[str]) -> dict:
    """`k=v` pairs from the command line; values are JSON when they parse (0.2, true), else text."""
    assignments = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise MlpipeError(f"--param {pair!r}: expected NAME=VALUE", code="InvalidRequest")
        try:
            assignments[name] = json.loads(value)
        except ValueError:
            assignments[name] = value
    return assignments
