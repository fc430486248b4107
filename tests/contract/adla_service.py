"""Azure Data Lake Analytics job API, 2016-11-01 data plane (CONTRACTS.md 2e), for the calls mlpipe makes.

PUT  /Jobs/{jobIdentity}?api-version=2016-11-01   CreateJobParameters -> JobInformation
GET  /Jobs/{jobIdentity}                          JobInformation {state, result, errorMessage[], stateAuditRecords[]}
POST /Jobs/{jobIdentity}/CancelJob                200

Validation as the spec (job.json): jobIdentity a GUID; name, type and properties.script required;
type USql; degreeOfParallelism >= 1; related.recurrenceId required when related is given.
States advance one per GET: Accepted, Compiling, Queued, Scheduling, Starting, Running, Ended.
The service retired on 2024-02-29; this server is the only "real" ADLA mlpipe is tested against.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any

from tests.contract.azure_service import AzureService
from tests.contract.server import Request, Response

DEFAULT_SCRIPT = ("Compiling", "Queued", "Running", ("Ended", "Succeeded"))


class AdlaService(AzureService):
    error_codes = {400: "BadRequest", 404: "JobNotFound"}
    token_refused = "Authentication failed: the access token is invalid."
    api_version = "2016-11-01"
    api_version_refused = "The api-version '2016-11-01' is required."
    routes = [
        ("PUT", r"/Jobs/(?P<id>[^/]+)", "put_job"),
        ("GET", r"/Jobs/(?P<id>[^/]+)", "get_job"),
        ("POST", r"/Jobs/(?P<id>[^/]+)/CancelJob", "cancel_job"),
    ]

    def __init__(self, token: str, behaviour: Callable[[dict], Any] | None = None):
        super().__init__(token)
        self.behaviour = behaviour
        self.jobs: dict[str, dict] = {}
        self.scripts: list[tuple] = []

    def script_next(self, *states) -> None:
        self.scripts.append(states)

    @staticmethod
    def _guid(value: str) -> bool:
        try:
            uuid.UUID(value)
            return True
        except ValueError:
            return False

    def put_job(self, request: Request, match) -> Response:
        job_id = match["id"]
        if not self._guid(job_id):
            return self._error(400, "jobIdentity must be a GUID")
        if job_id in self.jobs:
            return self._error(409, f"Job {job_id} already exists.")
        body = request.body or {}
        props = body.get("properties") or {}
        if not body.get("name") or body.get("type") != "USql" or props.get("type") != "USql" or not props.get("script"):
            return self._error(400, "name, type USql and properties.script are required")
        if int(body.get("degreeOfParallelism", 1)) < 1:
            return self._error(400, "degreeOfParallelism must be at least 1")
        related = body.get("related")
        if related is not None and not related.get("recurrenceId"):
            return self._error(400, "related.recurrenceId is required")
        script = list(self.scripts.pop(0) if self.scripts else DEFAULT_SCRIPT)
        self.jobs[job_id] = {"jobId": job_id, "body": body, "script": script, "state": "Accepted", "result": "None",
                             "errors": [], "audit": [{"newState": "Accepted", "timeStamp": "2016-01-01T00:00:00Z"}],
                             "cancel": False}
        return Response(200, self._info(self.jobs[job_id]))

    def _info(self, job: dict) -> dict:
        body = job["body"]
        return {"jobId": job["jobId"], "name": body["name"], "type": "USql", "submitter": "mlpipe@example.com",
                "degreeOfParallelism": body.get("degreeOfParallelism", 1), "priority": body.get("priority", 1000),
                "state": job["state"], "result": job["result"], "errorMessage": job["errors"],
                "stateAuditRecords": job["audit"], "related": body.get("related"),
                "properties": {"type": "USql", "script": body["properties"]["script"]}}

    def get_job(self, request: Request, match) -> Response:
        job = self.jobs.get(match["id"])
        if job is None:
            return self._error(404, f"Job {match['id']} not found.")
        if job["state"] != "Ended":
            if job["cancel"]:
                job["state"], job["result"] = "Ended", "Cancelled"
            elif job["script"]:
                item = job["script"].pop(0)
                state, result = (item, None) if isinstance(item, str) else (item[0], item[1])
                job["state"] = state
                if result:
                    job["result"] = result
                if result == "Failed":
                    job["errors"] = [{"errorId": "E_CSC_USER_SYNTAXERROR", "severity": "Error",
                                      "message": "syntax error. Expected one of: ';'", "lineNumber": 3,
                                      "resolution": "Correct the script syntax."}]
                if result == "Succeeded" and self.behaviour is not None:
                    self.behaviour(job)
            job["audit"].append({"newState": job["state"], "timeStamp": "2016-01-01T00:00:01Z"})
        return Response(200, self._info(job))

    def cancel_job(self, request: Request, match) -> Response:
        job = self.jobs.get(match["id"])
        if job is None:
            return self._error(404, f"Job {match['id']} not found.")
        if job["state"] != "Ended":
            job["cancel"] = True
        return Response(200, None)


def usql_copy_behaviour(read_blobs, write_blob, connection):
    """Plays the U-SQL runtime for scripts of the shape EXTRACT ... FROM "<uri>" ... OUTPUT ... TO "<uri>/file":
    the output file gets the input's bytes, upper-cased (a visible transformation)."""
    def behave(job: dict) -> None:
        script = job["body"]["properties"]["script"]
        source = re.search(r'FROM\s+"([^"]+)"', script).group(1)
        target = re.search(r'TO\s+"([^"]+)"', script).group(1)
        folder, _, name = target.rpartition("/")
        write_blob(connection, folder, name, read_blobs(connection, source).upper())
    return behave
