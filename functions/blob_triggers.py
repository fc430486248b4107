"""Blob upload (API.md §4): a blob trigger on the default datastore's container feeds datastore schedules.

For each changed blob under an active datastore schedule's `pathOnDatastore`, raise `BlobChanged`
on that schedule's debounce orchestration (orchestrations/debounce.py), starting it if it is not
running. Everything else (step outputs under runs/, unwatched folders) returns at once.
"""

from __future__ import annotations

import asyncio
import logging
import os

import azure.durable_functions as df
import azure.functions as func

from orchestrations.debounce import CHANGE_EVENT, DEBOUNCE_ORCHESTRATOR, instance_id_for
from shared import schedules
from shared.settings import Settings

bp = df.Blueprint()
log = logging.getLogger("mlpipe.triggers")

# The host resolves %MLPIPE_BLOBSTORE_CONTAINER% from app settings; default it like shared.settings does.
os.environ.setdefault("MLPIPE_BLOBSTORE_CONTAINER", Settings.blobstore_container)


@bp.blob_trigger(arg_name="blob", path="%MLPIPE_BLOBSTORE_CONTAINER%/{name}", connection="AzureWebJobsStorage")
@bp.durable_client_input(client_name="client")
async def datastore_blob_changed(blob: func.InputStream, client: df.DurableOrchestrationClient) -> None:
    _container, _, path = (blob.name or "").partition("/")
    watchers = await asyncio.to_thread(schedules.watching, path)
    if not watchers:
        return
    etag = (getattr(blob, "blob_properties", None) or {}).get("ETag") or ""
    for schedule in watchers:
        change = {"path": path, "etag": str(etag).strip('"'),
                  "debounceSeconds": schedule.Datastore.get("debounceSeconds", schedules.DEFAULT_DEBOUNCE_SECONDS)}
        await signal_change(client, schedule.Name, change)


async def signal_change(client: df.DurableOrchestrationClient, schedule: str, change: dict) -> None:
    """Raise the change on the schedule's debounce instance; start the instance if it does not run."""
    instance = instance_id_for(schedule)
    try:
        await client.raise_event(instance, CHANGE_EVENT, change)
        return
    except Exception:  # noqa: BLE001 - 404/410: no running instance; start one below
        pass
    try:
        await client.start_new(DEBOUNCE_ORCHESTRATOR, instance, {"schedule": schedule, "changes": [change]})
        log.info("schedule %s: change window opened by %s", schedule, change["path"])
    except Exception:  # noqa: BLE001 - started by a concurrent trigger a moment ago: raise on it
        await client.raise_event(instance, CHANGE_EVENT, change)


@bp.activity_trigger(input_name="payload")
def datastore_window_fire(payload: dict) -> dict:
    """A change window's quiet period ended: queue its one submission (idempotent by message id)."""
    return schedules.fire_window(payload["schedule"], payload.get("paths") or [], payload["windowKey"])
