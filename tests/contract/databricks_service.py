"""Databricks Jobs API (2.1 and 2.2 paths) as CONTRACTS.md 2d describes it, for the calls mlpipe makes.

POST /api/2.x/jobs/runs/submit   {run_name, tasks[], timeout_seconds, idempotency_token} -> {run_id}
GET  /api/2.x/jobs/runs/get?run_id=          -> {run_id, state{life_cycle_state, result_state, state_message}, tasks[]}
GET  /api/2.x/jobs/runs/get-output?run_id=   (a task run id) -> {notebook_output{result}, logs, error, error_trace}
POST /api/2.x/jobs/runs/cancel   {run_id}    asynchronous; a no-op for an ended run

Each run follows a script of states, one step per `runs/get` (default PENDING, RUNNING,
TERMINATED/SUCCESS). When a run reaches TERMINATED/SUCCESS the test's `behaviour(run)` is called
(it plays the job: e.g. writes the output files under the URIs the task was given), and its
return value (a dict) may set notebook_result / logs / error.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from tests.contract.server import Request, Response, Service

API = r"/api/2\.[12]/jobs/runs"
TASK_KINDS = ("notebook_task", "spark_python_task", "spark_jar_task", "spark_submit_task", "python_wheel_task",
              "sql_task", "dbt_task", "run_job_task", "pipeline_task")
DEFAULT_SCRIPT = ("PENDING", "RUNNING", ("TERMINATED", "SUCCESS"))
TERMINAL = ("TERMINATED", "SKIPPED", "INTERNAL_ERROR")


class DatabricksService(Service):
    routes = [
        ("POST", API + r"/submit", "submit"),
        ("GET", API + r"/get", "get"),
        ("GET", API + r"/get-output", "get_output"),
        ("POST", API + r"/cancel", "cancel"),
    ]

    def __init__(self, token: str, behaviour: Callable[[dict], Any] | None = None,
                 default_script: tuple = DEFAULT_SCRIPT, cancel_immediately: bool = False):
        self.token = token
        self.cancel_immediately = cancel_immediately  # else TERMINATING first, as Databricks usually does
        self.behaviour = behaviour
        self.default_script = default_script
        self.runs: dict[int, dict] = {}
        self.by_token: dict[str, int] = {}
        self.scripts: list[tuple] = []          # scripts for the next submitted runs, in order
        self._ids = itertools.count(1001)

    def script_next(self, *states) -> None:
        """The next submitted run goes through these states: "RUNNING" or ("TERMINATED", "FAILED", "message")."""
        self.scripts.append(states)

    # ----- contract ----------------------------------------------------------------------------

    def error_body(self, status: int, message: str) -> Any:
        codes = {400: "INVALID_PARAMETER_VALUE", 401: "UNAUTHENTICATED", 404: "RESOURCE_DOES_NOT_EXIST",
                 429: "REQUEST_LIMIT_EXCEEDED", 500: "INTERNAL_ERROR", 503: "TEMPORARILY_UNAVAILABLE"}
        return {"error_code": codes.get(status, "UNKNOWN"), "message": message}

    def authorize(self, request: Request) -> Response | None:
        if request.path.startswith("/.well-known/"):
            return self._error(404, "not found")  # the SDK's host-metadata probe; optional
        if request.header("Authorization") != f"Bearer {self.token}":
            return self._error(401, "Invalid access token.")
        return None

    def submit(self, request: Request, match) -> Response:
        body = request.body or {}
        problem = _submit_problem(body)
        if problem:
            return self._error(400, problem)
        token = body.get("idempotency_token")
        if token and token in self.by_token:
            return Response(200, {"run_id": self.by_token[token]})
        run_id = next(self._ids)
        script = list(self.scripts.pop(0) if self.scripts else self.default_script)
        task = body["tasks"][0]
        self.runs[run_id] = {"run_id": run_id, "task_run_id": run_id + 500000, "body": body, "task": task,
                             "script": script, "state": ("QUEUED", None, ""), "output": {}, "cancel": False,
                             "gets": 0}
        if token:
            self.by_token[token] = run_id
        return Response(200, {"run_id": run_id})

    def _advance(self, run: dict) -> None:
        if run["state"][0] in TERMINAL:
            return
        if run["cancel"]:
            done = run["state"][0] == "TERMINATING" or self.cancel_immediately
            run["state"] = ("TERMINATED", "CANCELED", "Run cancelled.") if done \
                else ("TERMINATING", None, "Cancel requested.")
            return
        if not run["script"]:
            return
        item = run["script"].pop(0)
        item = (item,) if isinstance(item, str) else tuple(item)
        life_cycle, result, message = (item + (None, ""))[:3]
        run["state"] = (life_cycle, result, message or "")
        if life_cycle == "TERMINATED" and result == "SUCCESS" and self.behaviour is not None:
            run["output"] = self.behaviour(run) or {}

    def _run_body(self, run: dict) -> dict:
        life_cycle, result, message = run["state"]
        state = {"life_cycle_state": life_cycle, "state_message": message, "user_cancelled_or_timedout": False}
        if result:
            state["result_state"] = result
        task = run["task"]
        return {
            "run_id": run["run_id"], "run_name": run["body"].get("run_name", "Untitled"),
            "run_page_url": f"https://example.azuredatabricks.net/#job/runs/{run['run_id']}",
            "state": state,
            "tasks": [{"run_id": run["task_run_id"], "task_key": task["task_key"], "state": state}],
        }

    def get(self, request: Request, match) -> Response:
        run = self.runs.get(int(request.query.get("run_id", "0")))
        if run is None:
            return self._error(404, f"Run {request.query.get('run_id')} does not exist.")
        run["gets"] += 1
        self._advance(run)
        return Response(200, self._run_body(run))

    def get_output(self, request: Request, match) -> Response:
        wanted = int(request.query.get("run_id", "0"))
        run = next((r for r in self.runs.values() if r["task_run_id"] == wanted), None)
        if run is None:
            if wanted in self.runs:
                return self._error(400, "Retrieving the output of runs with multiple tasks is not supported. "
                                        "Please retrieve the output of each individual task run instead.")
            return self._error(404, f"Run {wanted} does not exist.")
        out = {"metadata": self._run_body(run)}
        output = run["output"]
        if "notebook_task" in run["task"]:
            out["notebook_output"] = {"result": output.get("notebook_result", ""), "truncated": False}
        if output.get("logs"):
            out["logs"] = output["logs"]
        life_cycle, result, message = run["state"]
        if result and result != "SUCCESS":
            out["error"] = output.get("error") or message
            out["error_trace"] = output.get("error_trace", "Traceback (most recent call last): ...")
        return Response(200, out)

    def cancel(self, request: Request, match) -> Response:
        run = self.runs.get(int((request.body or {}).get("run_id", 0)))
        if run is None:
            return self._error(404, "Run does not exist.")
        if run["state"][0] not in TERMINAL:
            run["cancel"] = True
        return Response(200, {})


def _submit_problem(body: dict) -> str | None:
    token = body.get("idempotency_token")
    if token is not None and (not isinstance(token, str) or len(token) > 64):
        return "idempotency_token must be a string of at most 64 characters"
    if "timeout_seconds" in body and not isinstance(body["timeout_seconds"], int):
        return "timeout_seconds must be an integer"
    tasks = body.get("tasks")
    if not isinstance(tasks, list) or not tasks:
        return "tasks is required"
    for task in tasks:
        if not task.get("task_key"):
            return "task_key is required"
        kinds = [k for k in TASK_KINDS if k in task]
        if len(kinds) != 1:
            return f"exactly one task type is required, got {kinds}"
        if "notebook_task" in task and not task["notebook_task"].get("notebook_path"):
            return "notebook_task.notebook_path is required"
        if "spark_python_task" in task and not task["spark_python_task"].get("python_file"):
            return "spark_python_task.python_file is required"
        clusters = [k for k in ("existing_cluster_id", "new_cluster", "job_cluster_key") if k in task]
        if len(clusters) != 1:
            return f"exactly one of existing_cluster_id, new_cluster, job_cluster_key is required, got {clusters}"
        cluster = task.get("new_cluster")
        if cluster is not None:
            if not cluster.get("spark_version"):
                return "new_cluster.spark_version is required"
            if not (cluster.get("node_type_id") or cluster.get("instance_pool_id")):
                return "new_cluster.node_type_id is required"
            if "num_workers" not in cluster and "autoscale" not in cluster:
                return "new_cluster.num_workers or autoscale is required"
        params = (task.get("notebook_task") or {}).get("base_parameters") or {}
        if any(not isinstance(v, str) for v in params.values()):
            return "base_parameters values must be strings"
    return None
