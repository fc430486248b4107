"""HTTP API (API.md section 3): thin handlers over shared.control; errors mapped in http_support."""

from __future__ import annotations

import urllib.parse

import azure.durable_functions as df
import azure.functions as func

from functions.http_support import api_handler, in_thread, json_response, read_json
from orchestrations.pipeline_run import CANCEL_EVENT, ORCHESTRATOR_NAME
from shared import control
from shared.errors import UnsupportedMediaType
from shared.openapi import openapi_document

bp = df.Blueprint()


def _base_url(req: func.HttpRequest) -> str:
    parts = urllib.parse.urlsplit(req.url)
    return f"{parts.scheme}://{parts.netloc}"


def _listing(values: list) -> func.HttpResponse:
    return json_response({"value": values, "nextLink": None})


def _content_type(req: func.HttpRequest) -> str:
    return (req.headers.get("content-type") or "application/json").split(";")[0].strip().lower()


@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@api_handler
def health(req: func.HttpRequest) -> func.HttpResponse:
    return json_response(control.health())


@bp.route(route="openapi.json", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@api_handler
def openapi(req: func.HttpRequest) -> func.HttpResponse:
    """The OpenAPI 3.1 document, generated from the pydantic models; like health it needs no key."""
    return json_response(openapi_document(_base_url(req)))


@bp.route(route="datastores", methods=["GET"])
@api_handler
def list_datastores(req: func.HttpRequest) -> func.HttpResponse:
    return _listing(control.list_datastores())


@bp.route(route="pipelines", methods=["POST"])
@api_handler
def publish_pipeline(req: func.HttpRequest) -> func.HttpResponse:
    content_type = _content_type(req)
    base = _base_url(req)
    if content_type in ("application/zip", "application/x-zip-compressed", "application/octet-stream"):
        pipeline = control.publish_package(
            req.get_body(), name=req.params.get("name"), description=req.params.get("description"),
            version=req.params.get("version"), private=req.params.get("private", "").lower() == "true",
            base_url=base)
    elif content_type == "application/json":
        pipeline = control.publish_json(read_json(req), base_url=base)
    else:
        raise UnsupportedMediaType(
            f"Content-Type {content_type!r}: publish takes application/json or application/zip")
    return json_response(pipeline, 201, {"Location": f"/api/pipelines/{pipeline['Id']}"})


@bp.route(route="pipelines", methods=["GET"])
@api_handler
def list_pipelines(req: func.HttpRequest) -> func.HttpResponse:
    return _listing(control.list_pipelines(req.params.get("status", "Active"), base_url=_base_url(req)))


@bp.route(route="pipelines/{pipeline_id}", methods=["GET"])
@api_handler
def get_pipeline(req: func.HttpRequest) -> func.HttpResponse:
    return json_response(control.get_pipeline(req.route_params["pipeline_id"], base_url=_base_url(req)))


@bp.route(route="pipelines/{pipeline_id}/disable", methods=["POST"])
@api_handler
def disable_pipeline(req: func.HttpRequest) -> func.HttpResponse:
    return json_response(control.set_pipeline_enabled(req.route_params["pipeline_id"], False, base_url=_base_url(req)))


@bp.route(route="pipelines/{pipeline_id}/enable", methods=["POST"])
@api_handler
def enable_pipeline(req: func.HttpRequest) -> func.HttpResponse:
    return json_response(control.set_pipeline_enabled(req.route_params["pipeline_id"], True, base_url=_base_url(req)))


@bp.route(route="pipelines/{pipeline_id}/submit", methods=["POST"])
@bp.durable_client_input(client_name="client")
@api_handler
async def submit_pipeline(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    submission = await in_thread(control.submit, req.route_params["pipeline_id"], read_json(req))
    await client.start_new(ORCHESTRATOR_NAME, submission.run_id, submission.orchestration_input)
    run = submission.run
    return json_response(run, 202, {"Location": f"/api/runs/{run['Id']}"})


# --- pipeline endpoints -------------------------------------------------------------------------
@bp.route(route="endpoints", methods=["POST"])
@api_handler
def create_endpoint(req: func.HttpRequest) -> func.HttpResponse:
    endpoint = control.create_endpoint(read_json(req), base_url=_base_url(req))
    return json_response(endpoint, 201, {"Location": f"/api/endpoints/{endpoint['Name']}"})


@bp.route(route="endpoints", methods=["GET"])
@api_handler
def list_endpoints(req: func.HttpRequest) -> func.HttpResponse:
    return _listing(control.list_endpoints(req.params.get("status", "Active"), base_url=_base_url(req)))


@bp.route(route="endpoints/{endpoint_name}", methods=["GET"])
@api_handler
def get_endpoint(req: func.HttpRequest) -> func.HttpResponse:
    return json_response(control.get_endpoint(req.route_params["endpoint_name"], base_url=_base_url(req)))


@bp.route(route="endpoints/{endpoint_name}/versions", methods=["POST"])
@api_handler
def add_endpoint_version(req: func.HttpRequest) -> func.HttpResponse:
    endpoint = control.add_endpoint_version(req.route_params["endpoint_name"], read_json(req), base_url=_base_url(req))
    return json_response(endpoint, 201, {"Location": f"/api/endpoints/{endpoint['Name']}"})


@bp.route(route="endpoints/{endpoint_name}/default", methods=["PUT"])
@api_handler
def set_endpoint_default(req: func.HttpRequest) -> func.HttpResponse:
    return json_response(control.set_endpoint_default(req.route_params["endpoint_name"], read_json(req),
                                                      base_url=_base_url(req)))


@bp.route(route="endpoints/{endpoint_name}/disable", methods=["POST"])
@api_handler
def disable_endpoint(req: func.HttpRequest) -> func.HttpResponse:
    return json_response(control.set_endpoint_enabled(req.route_params["endpoint_name"], False,
                                                      base_url=_base_url(req)))


@bp.route(route="endpoints/{endpoint_name}/enable", methods=["POST"])
@api_handler
def enable_endpoint(req: func.HttpRequest) -> func.HttpResponse:
    return json_response(control.set_endpoint_enabled(req.route_params["endpoint_name"], True, base_url=_base_url(req)))


@bp.route(route="endpoints/{endpoint_name}/submit", methods=["POST"])
@bp.durable_client_input(client_name="client")
@api_handler
async def submit_endpoint(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    submission = await in_thread(control.submit_to_endpoint, req.route_params["endpoint_name"], read_json(req),
                                 req.params.get("pipelineVersion"))
    await client.start_new(ORCHESTRATOR_NAME, submission.run_id, submission.orchestration_input)
    run = submission.run
    return json_response(run, 202, {"Location": f"/api/runs/{run['Id']}"})


# --- runs -------------------------------------------------------------------------------------
@bp.route(route="runs", methods=["GET"])
@api_handler
def list_runs(req: func.HttpRequest) -> func.HttpResponse:
    params = req.params
    return _listing(control.list_runs(experiment=params.get("experiment"), status=params.get("status"),
                                      pipeline_id=params.get("pipelineId"), top=params.get("top"),
                                      tag=params.get("tag"), endpoint_name=params.get("endpointName")))


@bp.route(route="runs/{run_id}", methods=["GET"])
@api_handler
def get_run(req: func.HttpRequest) -> func.HttpResponse:
    return json_response(control.get_run(req.route_params["run_id"], req.params.get("includeSteps", "true"),
                                         req.params.get("waitSeconds")))


@bp.route(route="runs/{run_id}/cancel", methods=["POST"])
@bp.durable_client_input(client_name="client")
@api_handler
async def cancel_run(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    run, notify = await in_thread(control.request_cancel, req.route_params["run_id"])
    if notify:
        await client.raise_event(run["Id"], CANCEL_EVENT, {})
    return json_response(run, 202, {"Location": f"/api/runs/{run['Id']}"})


@bp.route(route="runs/{run_id}/tags", methods=["POST", "PATCH"])
@api_handler
def update_run_tags(req: func.HttpRequest) -> func.HttpResponse:
    return json_response(control.update_run_tags(req.route_params["run_id"], read_json(req)))


@bp.route(route="runs/{run_id}/steps/{step}/logs", methods=["GET"])
@api_handler
def get_step_logs(req: func.HttpRequest) -> func.HttpResponse:
    text = control.get_step_logs(req.route_params["run_id"], req.route_params["step"], req.params.get("attempt"))
    return func.HttpResponse(text, status_code=200, mimetype="text/plain", charset="utf-8")


@bp.route(route="runs/{run_id}/steps/{step}/fingerprint", methods=["GET"])
@api_handler
def get_step_fingerprint(req: func.HttpRequest) -> func.HttpResponse:
    return json_response(control.get_step_fingerprint(req.route_params["run_id"], req.route_params["step"]))
