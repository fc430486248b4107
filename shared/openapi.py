"""The OpenAPI 3.1 document of the HTTP API, generated from the pydantic models (never written by hand).

Each operation below names its request model, query parameters and response models; the schemas
come from `pydantic.json_schema.models_json_schema` (JSON Schema 2020-12, which OpenAPI 3.1 uses
as is). A test checks that every HTTP route the Function App registers is described here, and
another runs schemathesis against a live host with this document.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from shared import __version__
from shared import api_models as m
from shared.control import EndpointSubmitRequest, PublishRequest, SubmitRequest
from shared.runs import RUN_STATUSES

_REF = "#/components/schemas/{model}"
_STATUS_FILTER = {"type": "string", "enum": ["Active", "Disabled", "All"], "default": "Active"}
_DESCRIPTIONS = {200: "OK", 201: "Created", 202: "Accepted", 204: "No content",
                 400: "Bad request (the message names the field)",
                 401: "Missing or wrong function key", 404: "Not found", 409: "Conflict",
                 413: "Request body too large", 415: "Unsupported media type"}


@dataclass(frozen=True)
class Query:
    name: str
    schema: dict
    description: str = ""


@dataclass(frozen=True)
class Operation:
    method: str
    path: str  # under /api, with {name} path parameters
    operation_id: str
    summary: str
    response: type[BaseModel] | str | None  # a model, "text" (text/plain) or "object" (free JSON object)
    status: int = 200
    request: type[BaseModel] | None = None
    errors: tuple[int, ...] = (400, 404)
    query: tuple[Query, ...] = ()
    anonymous: bool = False
    tags: tuple[str, ...] = field(default=())


def _ops() -> list[Operation]:
    name_q = Query("name", {"type": "string"}, "overrides the definition's name")
    return [
        Operation("get", "/health", "health", "Liveness and version (no key needed)", m.Health, errors=(),
                  anonymous=True, tags=("host",)),
        Operation("get", "/openapi.json", "openapi", "This document (no key needed)", "object", errors=(),
                  anonymous=True, tags=("host",)),
        Operation("get", "/datastores", "list_datastores", "List datastores", m.DatastoreList, errors=(),
                  tags=("datastores",)),
        Operation("post", "/pipelines", "publish_pipeline",
                  "Publish a pipeline: a JSON definition, or a zip package with pipeline.yaml and its sources",
                  m.Pipeline, 201, PublishRequest, errors=(400, 413, 415),
                  query=(name_q, Query("description", {"type": "string"}), Query("version", {"type": "string"}),
                         Query("private", {"type": "string", "enum": ["true", "false"]})),
                  tags=("pipelines",)),
        Operation("get", "/pipelines", "list_pipelines", "List published pipelines, newest first", m.PipelineList,
                  errors=(400,), query=(Query("status", _STATUS_FILTER),), tags=("pipelines",)),
        Operation("get", "/pipelines/{pipeline_id}", "get_pipeline", "Get a published pipeline", m.Pipeline,
                  errors=(404,), tags=("pipelines",)),
        Operation("post", "/pipelines/{pipeline_id}/disable", "disable_pipeline", "Disable a published pipeline",
                  m.Pipeline, errors=(404, 409), tags=("pipelines",)),
        Operation("post", "/pipelines/{pipeline_id}/enable", "enable_pipeline", "Enable a published pipeline",
                  m.Pipeline, errors=(404, 409), tags=("pipelines",)),
        Operation("post", "/pipelines/{pipeline_id}/submit", "submit_pipeline",
                  "Submit a run (409 PipelineDisabled when disabled)", m.Run, 202, SubmitRequest,
                  errors=(400, 404, 409, 413, 415), tags=("pipelines", "runs")),
        Operation("post", "/endpoints", "create_endpoint", "Create a pipeline endpoint (the pipeline is version 0)",
                  m.Endpoint, 201, m.CreateEndpointRequest, errors=(400, 404, 409, 413, 415), tags=("endpoints",)),
        Operation("get", "/endpoints", "list_endpoints", "List pipeline endpoints", m.EndpointList, errors=(400,),
                  query=(Query("status", _STATUS_FILTER),), tags=("endpoints",)),
        Operation("get", "/endpoints/{endpoint_name}", "get_endpoint", "Get a pipeline endpoint", m.Endpoint,
                  errors=(404,), tags=("endpoints",)),
        Operation("post", "/endpoints/{endpoint_name}/versions", "add_endpoint_version",
                  "Add a pipeline as the endpoint's next version", m.Endpoint, 201, m.AddEndpointVersionRequest,
                  errors=(400, 404, 409, 413, 415), tags=("endpoints",)),
        Operation("put", "/endpoints/{endpoint_name}/default", "set_endpoint_default",
                  "Set the endpoint's default version", m.Endpoint, 200, m.SetDefaultVersionRequest,
                  errors=(400, 404, 409, 413, 415), tags=("endpoints",)),
        Operation("post", "/endpoints/{endpoint_name}/disable", "disable_endpoint", "Disable a pipeline endpoint",
                  m.Endpoint, errors=(404, 409), tags=("endpoints",)),
        Operation("post", "/endpoints/{endpoint_name}/enable", "enable_endpoint", "Enable a pipeline endpoint",
                  m.Endpoint, errors=(404, 409), tags=("endpoints",)),
        Operation("post", "/endpoints/{endpoint_name}/submit", "submit_endpoint",
                  "Submit a run of the endpoint's default version, or of PipelineVersion / ?pipelineVersion",
                  m.Run, 202, EndpointSubmitRequest, errors=(400, 404, 409, 413, 415),
                  query=(Query("pipelineVersion", {"type": "string"}, "the endpoint version to run"),),
                  tags=("endpoints", "runs")),
        Operation("get", "/runs", "list_runs", "List runs, newest first", m.RunList, errors=(400,),
                  query=(Query("experiment", {"type": "string"}),
                         Query("status", {"type": "string", "enum": list(RUN_STATUSES)}),
                         Query("pipelineId", {"type": "string"}), Query("endpointName", {"type": "string"}),
                         Query("tag", {"type": "string"}, "KEY (the run has the tag) or KEY:VALUE"),
                         Query("top", {"type": "integer", "minimum": 1, "maximum": 1000})),
                  tags=("runs",)),
        Operation("get", "/runs/{run_id}", "get_run", "Get a run with its steps", m.Run, errors=(400, 404),
                  query=(Query("includeSteps", {"type": "string", "enum": ["true", "false"]},
                               "false: the run without its steps (one storage read; for polling)"),
                         Query("waitSeconds", {"type": "number", "minimum": 0, "maximum": 30},
                               "answer once the run has ended, or after this many seconds")),
                  tags=("runs",)),
        Operation("post", "/runs/{run_id}/cancel", "cancel_run", "Cancel a run", m.Run, 202, errors=(400, 404, 409),
                  tags=("runs",)),
        Operation("post", "/runs/{run_id}/tags", "add_run_tags",
                  "Add or change run tags (a null value removes the tag)", m.Run, 200, m.TagsRequest,
                  errors=(400, 404, 409, 413, 415), tags=("runs",)),
        Operation("patch", "/runs/{run_id}/tags", "update_run_tags",
                  "Add or change run tags (a null value removes the tag)", m.Run, 200, m.TagsRequest,
                  errors=(400, 404, 409, 413, 415), tags=("runs",)),
        Operation("get", "/runs/{run_id}/steps/{step}/logs", "get_step_logs", "A step's stdout and stderr", "text",
                  query=(Query("attempt", {"type": "integer", "minimum": 1}, "an earlier, failed attempt"),),
                  tags=("runs",)),
        Operation("get", "/runs/{run_id}/steps/{step}/fingerprint", "get_step_fingerprint",
                  "A step's fingerprint ingredients, each with its hash", "object", tags=("runs",)),
        *_schedule_ops(),
    ]


def _schedule_ops() -> list[Operation]:
    from shared.schedules import CreateScheduleRequest, Schedule, ScheduleList

    status_q = Query("status", {"type": "string", "enum": ["Active", "Disabled", "All"], "default": "All"})
    return [
        Operation("post", "/schedules", "create_schedule",
                  "Create a schedule: a recurrence, a six-field NCRONTAB, or a datastore path to watch",
                  Schedule, 201, CreateScheduleRequest, errors=(400, 404, 409, 413, 415), tags=("schedules",)),
        Operation("get", "/schedules", "list_schedules", "List schedules", ScheduleList, errors=(400,),
                  query=(status_q,), tags=("schedules",)),
        Operation("get", "/schedules/{schedule_name}", "get_schedule", "Get a schedule (Status, LastRunId, next due)",
                  Schedule, errors=(404,), tags=("schedules",)),
        Operation("post", "/schedules/{schedule_name}/disable", "disable_schedule", "Disable a schedule", Schedule,
                  errors=(404, 409), tags=("schedules",)),
        Operation("post", "/schedules/{schedule_name}/enable", "enable_schedule", "Enable a schedule", Schedule,
                  errors=(404, 409), tags=("schedules",)),
        Operation("delete", "/schedules/{schedule_name}", "delete_schedule", "Delete a schedule", None, 204,
                  errors=(404, 409), tags=("schedules",)),
    ]


OPERATIONS: tuple[Operation, ...] = tuple(_ops())


def _schemas() -> tuple[dict[tuple[type[BaseModel], str], dict], dict]:
    models: list[tuple[type[BaseModel], str]] = [(m.ErrorResponse, "serialization")]
    for op in OPERATIONS:
        if op.request is not None:
            models.append((op.request, "validation"))
        if isinstance(op.response, type):
            models.append((op.response, "serialization"))
    unique = list(dict.fromkeys(models))
    refs, definitions = models_json_schema(unique, ref_template=_REF)
    return refs, definitions.get("$defs", {})


def _json_content(schema: dict) -> dict:
    return {"application/json": {"schema": schema}}


def _operation(op: Operation, refs: dict) -> dict:
    body: dict[str, Any] = {"operationId": op.operation_id, "summary": op.summary, "tags": list(op.tags)}
    params = [{"name": name, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
              for name in _path_names(op.path)]
    params += [{"name": q.name, "in": "query", "required": False, "schema": q.schema,
                **({"description": q.description} if q.description else {})} for q in op.query]
    if params:
        body["parameters"] = params
    if op.request is not None:
        content = _json_content(refs[(op.request, "validation")])
        if op.operation_id == "publish_pipeline":
            content["application/zip"] = {"schema": {"type": "string", "contentMediaType": "application/zip"}}
        body["requestBody"] = {"required": True, "content": content}
    if op.response is None:
        success = None
    elif op.response == "text":
        success = {"text/plain": {"schema": {"type": "string"}}}
    elif op.response == "object":
        success = _json_content({"type": "object"})
    else:
        success = _json_content(refs[(op.response, "serialization")])
    responses: dict[str, Any] = {str(op.status): {"description": _DESCRIPTIONS[op.status],
                                                  **({"content": success} if success is not None else {})}}
    error = _json_content(refs[(m.ErrorResponse, "serialization")])
    for status in sorted(set(op.errors) | (set() if op.anonymous else {401})):
        responses[str(status)] = {"description": _DESCRIPTIONS[status], "content": error}
    body["responses"] = responses
    body["security"] = [] if op.anonymous else [{"functionKey": []}, {"functionKeyQuery": []}]
    return body


def _path_names(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{") and part.endswith("}")]


@functools.lru_cache(maxsize=8)
def _document_json(server_url: str) -> str:
    refs, definitions = _schemas()
    paths: dict[str, dict] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method] = _operation(op, refs)
    document = {
        "openapi": "3.1.0",
        "info": {"title": "mlpipe", "version": __version__,
                 "description": "Azure-ML-style pipelines on Azure Functions + Durable Functions (API.md section 3). "
                                "Errors are {\"error\": {\"code\", \"message\"}}; the message names the field."},
        "servers": [{"url": server_url}],
        "paths": paths,
        "components": {
            "schemas": definitions,
            "securitySchemes": {
                "functionKey": {"type": "apiKey", "in": "header", "name": "x-functions-key"},
                "functionKeyQuery": {"type": "apiKey", "in": "query", "name": "code"},
            },
        },
    }
    return json.dumps(document)


def openapi_document(base_url: str | None = None) -> dict:
    """The document; `servers` is `{base_url}/api` (or `/api` when the base URL is unknown)."""
    return json.loads(_document_json(f"{base_url.rstrip('/')}/api" if base_url else "/api"))
