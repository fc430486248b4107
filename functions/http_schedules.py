"""Schedules HTTP API (API.md §3): create, list, get, disable/enable, delete. Thin over shared.schedules."""

from __future__ import annotations

import logging

import azure.durable_functions as df
import azure.functions as func

from functions.http_support import api_handler, in_thread, json_response, read_json
from orchestrations.debounce import instance_id_for
from shared import schedules

bp = df.Blueprint()
log = logging.getLogger("mlpipe.http")


@bp.route(route="schedules", methods=["POST"])
@api_handler
def create_schedule(req: func.HttpRequest) -> func.HttpResponse:
    schedule = schedules.create_schedule(read_json(req))
    return json_response(schedule, 201, {"Location": f"/api/schedules/{schedule['Name']}"})


@bp.route(route="schedules", methods=["GET"])
@api_handler
def list_schedules(req: func.HttpRequest) -> func.HttpResponse:
    return json_response({"value": schedules.list_schedules(req.params.get("status", "All")), "nextLink": None})


@bp.route(route="schedules/{schedule_name}", methods=["GET"])
@api_handler
def get_schedule(req: func.HttpRequest) -> func.HttpResponse:
    return json_response(schedules.get_schedule(req.route_params["schedule_name"]))


@bp.route(route="schedules/{schedule_name}/disable", methods=["POST"])
@api_handler
def disable_schedule(req: func.HttpRequest) -> func.HttpResponse:
    return json_response(schedules.set_schedule_enabled(req.route_params["schedule_name"], False))


@bp.route(route="schedules/{schedule_name}/enable", methods=["POST"])
@api_handler
def enable_schedule(req: func.HttpRequest) -> func.HttpResponse:
    return json_response(schedules.set_schedule_enabled(req.route_params["schedule_name"], True))


@bp.route(route="schedules/{schedule_name}", methods=["DELETE"])
@bp.durable_client_input(client_name="client")
@api_handler
async def delete_schedule(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    record = await in_thread(schedules.delete_schedule, req.route_params["schedule_name"])
    if record.Kind == "Datastore":
        try:  # its debounce instance has nothing left to do (a pending window is dropped: the schedule is gone)
            await client.terminate(instance_id_for(record.Name), "schedule deleted")
        except Exception:  # noqa: BLE001 - not running
            log.debug("no debounce instance to stop for schedule %s", record.Name)
    return func.HttpResponse(status_code=204)
