"""Azure ML REST (Microsoft.MachineLearningServices, CONTRACTS.md 2c) for the calls mlpipe makes.

GET/PUT  {ws}/codes/{name}/versions/{version}       code version {properties{codeUri, isAnonymous}}
GET/PUT  {ws}/jobs/{name}                            command job (JobBase); status advances one step per GET
POST     {ws}/jobs/{name}/cancel                     202 + Location; CancelRequested, then Canceled
GET/PUT  {ws}/computes/{name}                        AmlCompute; provisioningState Creating -> Succeeded
every call: ?api-version=, Authorization: Bearer <token>

Validation follows the service: jobType Command, a command, an environmentId, a codeId naming a
registered code version, a computeId naming an existing compute, inputs/outputs with a known
type, and every ${{inputs.X}} / ${{outputs.Y}} in the command declared.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from tests.contract.azure_service import AzureService
from tests.contract.server import Request, Response

WS = (r"/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/"
      r"Microsoft\.MachineLearningServices/workspaces/(?P<ws>[^/]+)")
DEFAULT_SCRIPT = ("NotStarted", "Starting", "Preparing", "Queued", "Running", "Finalizing", "Completed")
TERMINAL = ("Completed", "Failed", "Canceled")
INPUT_TYPES = ("uri_file", "uri_folder", "mltable", "custom_model", "mlflow_model", "triton_model", "literal")
OUTPUT_TYPES = ("uri_file", "uri_folder", "mltable", "custom_model", "mlflow_model", "triton_model")


class AmlService(AzureService):
    error_codes = {400: "UserError", 404: "NotFound"}
    token_refused = "The access token is invalid or expired."
    api_version_refused = "The api-version query parameter (?api-version=) is required for all requests."
    routes = [
        ("GET", WS + r"/codes/(?P<name>[^/]+)/versions/(?P<version>[^/]+)", "get_code"),
        ("PUT", WS + r"/codes/(?P<name>[^/]+)/versions/(?P<version>[^/]+)", "put_code"),
        ("GET", WS + r"/jobs/(?P<name>[^/]+)", "get_job"),
        ("PUT", WS + r"/jobs/(?P<name>[^/]+)", "put_job"),
        ("POST", WS + r"/jobs/(?P<name>[^/]+)/cancel", "cancel_job"),
        ("GET", WS + r"/computes/(?P<name>[^/]+)", "get_compute"),
        ("PUT", WS + r"/computes/(?P<name>[^/]+)", "put_compute"),
    ]

    def __init__(self, token: str, behaviour: Callable[[dict], Any] | None = None,
                 computes: tuple[str, ...] = ("cpu-cluster",)):
        super().__init__(token)
        self.behaviour = behaviour
        self.codes: dict[str, dict] = {}
        self.jobs: dict[str, dict] = {}
        self.computes: dict[str, dict] = {name: {"state": ["Succeeded"], "body": {}} for name in computes}
        self.scripts: list[tuple] = []

    def script_next(self, *statuses: str) -> None:
        self.scripts.append(statuses)

    @staticmethod
    def _ws(match) -> str:
        return (f"/subscriptions/{match['sub']}/resourceGroups/{match['rg']}/providers/"
                f"Microsoft.MachineLearningServices/workspaces/{match['ws']}")

    # ----- code versions -----------------------------------------------------------------------

    def get_code(self, request: Request, match) -> Response:
        code = self.codes.get(request.path)
        return Response(200, code) if code else self._error(404, f"Code {match['name']}:{match['version']} not found")

    def put_code(self, request: Request, match) -> Response:
        props = (request.body or {}).get("properties") or {}
        if not props.get("codeUri"):
            return self._error(400, "codeUri is required")
        existing = self.codes.get(request.path)
        if existing and existing["properties"]["codeUri"] != props["codeUri"]:
            return self._error(409, "Code versions are immutable: a different codeUri exists for this version.")
        self.codes[request.path] = {"id": request.path, "name": match["version"], "properties": props}
        return Response(201 if not existing else 200, self.codes[request.path])

    # ----- jobs --------------------------------------------------------------------------------

    def get_job(self, request: Request, match) -> Response:
        job = self.jobs.get(match["name"])
        if job is None:
            return self._error(404, f"Job {match['name']} not found.")
        job["gets"] += 1
        self._advance(job)
        return Response(200, self._job_body(job))

    def put_job(self, request: Request, match) -> Response:
        name = match["name"]
        if name in self.jobs:
            return self._error(409, f"Job {name} already exists; only tags and description can be updated.")
        props = (request.body or {}).get("properties") or {}
        problem = self._job_problem(props, self._ws(match))
        if problem:
            return self._error(400, problem)
        script = list(self.scripts.pop(0) if self.scripts else DEFAULT_SCRIPT)
        self.jobs[name] = {"name": name, "id": request.path, "properties": props, "script": script,
                           "status": "NotStarted", "cancel": False, "gets": 0}
        return Response(201, self._job_body(self.jobs[name]))

    def _job_problem(self, props: dict, workspace: str) -> str | None:
        if props.get("jobType") != "Command":
            return "jobType must be Command"
        for key in ("command", "environmentId", "codeId"):
            if not props.get(key):
                return f"{key} is required"
        if props["codeId"] not in self.codes:
            return f"codeId {props['codeId']} does not refer to a registered code version"
        compute = props.get("computeId")
        if compute:
            if not compute.startswith(workspace + "/computes/"):
                return "computeId must be a compute of this workspace"
            cluster = self.computes.get(compute.rsplit("/", 1)[-1])
            if cluster is None:
                return f"Compute {compute.rsplit('/', 1)[-1]} not found"
            if cluster["state"][0] != "Succeeded":
                return f"Compute {compute.rsplit('/', 1)[-1]} is not ready (provisioningState {cluster['state'][0]})"
        for name, spec in (props.get("inputs") or {}).items():
            if spec.get("jobInputType") not in INPUT_TYPES or not spec.get("uri"):
                return f"input {name}: jobInputType and uri are required"
        for name, spec in (props.get("outputs") or {}).items():
            if spec.get("jobOutputType") not in OUTPUT_TYPES:
                return f"output {name}: unknown jobOutputType"
        for kind, name in re.findall(r"\$\{\{(inputs|outputs)\.([^}]+)\}\}", props["command"]):
            if name not in (props.get(kind) or {}):
                return f"command references ${{{{{kind}.{name}}}}}, which the job does not declare"
        return None

    def _advance(self, job: dict) -> None:
        if job["status"] in TERMINAL:
            return
        if job["cancel"]:
            job["status"] = "Canceled" if job["status"] == "CancelRequested" else "CancelRequested"
            return
        if job["script"]:
            job["status"] = job["script"].pop(0)
            if job["status"] in ("Completed", "Failed") and self.behaviour is not None:
                self.behaviour(job)

    def _job_body(self, job: dict) -> dict:
        return {"id": job["id"], "name": job["name"], "type": "Microsoft.MachineLearningServices/workspaces/jobs",
                "properties": {**job["properties"], "status": job["status"],
                               "services": {"Studio": {"endpoint": f"https://ml.azure.com/runs/{job['name']}"}}}}

    def cancel_job(self, request: Request, match) -> Response:
        job = self.jobs.get(match["name"])
        if job is None:
            return self._error(404, f"Job {match['name']} not found.")
        if job["status"] not in TERMINAL:
            job["cancel"] = True
        return Response(202, None, {"Location": f"{request.path}/operationResults/1"})

    # ----- computes ----------------------------------------------------------------------------

    def get_compute(self, request: Request, match) -> Response:
        compute = self.computes.get(match["name"])
        if compute is None:
            return self._error(404, f"Compute {match['name']} not found")
        state = compute["state"][0]
        if len(compute["state"]) > 1:
            compute["state"].pop(0)
        return Response(200, {"name": match["name"], "properties": {
            **(compute["body"].get("properties") or {}), "provisioningState": state}})

    def put_compute(self, request: Request, match) -> Response:
        props = ((request.body or {}).get("properties") or {})
        inner = props.get("properties") or {}
        location = (request.body or {}).get("location")
        if props.get("computeType") != "AmlCompute" or not inner.get("vmSize") or not location:
            return self._error(400, "computeType AmlCompute, properties.vmSize and location are required")
        scale = inner.get("scaleSettings") or {}
        if "maxNodeCount" not in scale:
            return self._error(400, "scaleSettings.maxNodeCount is required")
        self.computes[match["name"]] = {"state": ["Creating", "Creating", "Succeeded"], "body": request.body}
        return Response(201, {"name": match["name"], "properties": {**props, "provisioningState": "Creating"}},
                        {"Azure-AsyncOperation": f"{request.path}/operations/1"})
