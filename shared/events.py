"""Run events (API.md §4): CloudEvents 1.0 JSON to the `run-events` storage queue, or to a Service Bus
topic of that name (`MLPIPE_RUN_EVENTS=servicebus` + `MLPIPE_SERVICEBUS_CONNECTION`); `off` sends none.

Sent from activities only (run_plan, step_start/step_poll, run_finished), never from orchestrator
code, so a replay never sends anything. Activities run at least once, so an event may be sent more
than once: its `id` is stable (a UUID derived from run, type and what it is about), so consumers
de-duplicate on it (Service Bus: it is also the message id, for duplicate detection). A failed send
raises TransientError, so Durable retries the activity rather than losing the event.

    {"specversion": "1.0", "type": "mlpipe.StepCompleted", "source": "/mlpipe/pipelines/<id>",
     "id": "<stable uuid>", "subject": "<run id>", "time": "...", "datacontenttype": "application/json",
     "data": {"runId", "pipelineId", "experimentName", "status", "step"?, "attempt"?, "error"?, ...}}
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from typing import Any

from shared.errors import MlpipeError, TransientError
from shared.redact import redact
from shared.runs import utc_now
from shared.settings import get_settings

log = logging.getLogger("mlpipe.events")

RUN_QUEUED = "mlpipe.RunQueued"
RUN_STARTED = "mlpipe.RunStarted"
STEP_STARTED = "mlpipe.StepStarted"
STEP_REUSED = "mlpipe.StepReused"
STEP_COMPLETED = "mlpipe.StepCompleted"
STEP_FAILED = "mlpipe.StepFailed"
RUN_FINISHED = "mlpipe.RunFinished"
RUN_FAILED = "mlpipe.RunFailed"
RUN_CANCELED = "mlpipe.RunCanceled"
EVENT_TYPES = (RUN_QUEUED, RUN_STARTED, STEP_STARTED, STEP_REUSED, STEP_COMPLETED, STEP_FAILED, RUN_FINISHED,
               RUN_FAILED, RUN_CANCELED)
RUN_END_EVENTS = {"Finished": RUN_FINISHED, "Failed": RUN_FAILED, "Canceled": RUN_CANCELED}
_NAMESPACE = uuid.UUID("7d1f3c52-6f0e-4a53-9a53-2b8f1c1e6a10")
_SEND_ATTEMPTS = 3


def event_id(event_type: str, run_id: str, about: str = "") -> str:
    """Stable per event: the same run, type and subject matter always give the same id."""
    return str(uuid.uuid5(_NAMESPACE, f"{run_id}\n{event_type}\n{about}"))


def cloud_event(event_type: str, run_id: str, data: dict, *, about: str = "", pipeline_id: str | None = None,
                time_utc: str | None = None) -> dict:
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {event_type!r}")
    return {"specversion": "1.0", "type": event_type,
            "source": f"/mlpipe/pipelines/{pipeline_id}" if pipeline_id else "/mlpipe",
            "id": event_id(event_type, run_id, about), "subject": run_id, "time": time_utc or utc_now(),
            "datacontenttype": "application/json", "data": {"runId": run_id, **data}}


# --- sinks -------------------------------------------------------------------------------------
class _ServiceBusTopic:
    """A cached azure-servicebus topic sender (created on first use)."""

    def __init__(self, connection: str, topic: str):
        from azure.servicebus import ServiceBusClient

        self._client = ServiceBusClient.from_connection_string(connection)
        self._sender = self._client.get_topic_sender(topic)
        self._lock = threading.Lock()

    def send(self, event: dict) -> None:
        with self._lock:
            self._sender.send_messages(to_servicebus_message(event))


def to_servicebus_message(event: dict):
    """The Service Bus message of a CloudEvent (structured mode: the whole event is the body)."""
    from azure.servicebus import ServiceBusMessage

    return ServiceBusMessage(json.dumps(event), message_id=event["id"], subject=event["subject"],
                             content_type="application/cloudevents+json; charset=utf-8",
                             application_properties={"cloudEvents:type": event["type"],
                                                     "cloudEvents:specversion": "1.0"})


_topics: dict[tuple[str, str], _ServiceBusTopic] = {}
_topics_lock = threading.Lock()


def _topic(connection: str, name: str) -> _ServiceBusTopic:
    with _topics_lock:
        topic = _topics.get((connection, name))
        if topic is None:
            topic = _topics[(connection, name)] = _ServiceBusTopic(connection, name)
    return topic


def _send(event: dict) -> None:
    settings = get_settings()
    if settings.run_events == "servicebus":
        if not settings.servicebus_connection:
            raise MlpipeError("MLPIPE_RUN_EVENTS=servicebus needs MLPIPE_SERVICEBUS_CONNECTION")
        _topic(settings.servicebus_connection, settings.run_events_queue).send(event)
    else:
        from shared.queues import send_text

        send_text(settings.run_events_queue, json.dumps(event))


def emit(event_type: str, run_id: str, data: dict | None = None, *, about: str = "",
         pipeline_id: str | None = None, time_utc: str | None = None) -> dict | None:
    """Send one event (retried a few times); TransientError if it could not be sent."""
    if get_settings().run_events == "off":
        return None
    event = cloud_event(event_type, run_id, data or {}, about=about, pipeline_id=pipeline_id, time_utc=time_utc)
    for attempt in range(1, _SEND_ATTEMPTS + 1):
        try:
            _send(event)
            return event
        except Exception as error:  # noqa: BLE001 - storage / Service Bus errors of any kind
            if attempt == _SEND_ATTEMPTS:
                log.error("run %s: event %s not sent: %s", run_id, event_type, redact(str(error)))
                raise TransientError(f"run event {event_type} could not be sent") from error
            time.sleep(0.2 * attempt)
    return None


# --- the events activities send --------------------------------------------------------------------
def _run_data(run: Any) -> dict:
    return {"pipelineId": run.PipelineId, "experimentName": run.ExperimentName, "status": run.Status,
            "endpointName": run.EndpointName}


def run_queued_and_started(run: Any) -> None:
    emit(RUN_QUEUED, run.Id, {**_run_data(run), "status": "Queued"}, pipeline_id=run.PipelineId,
         time_utc=run.CreatedTimeUtc)
    emit(RUN_STARTED, run.Id, {**_run_data(run), "status": "Running"}, pipeline_id=run.PipelineId,
         time_utc=run.StartTimeUtc)


def run_ended(run: Any) -> None:
    event_type = RUN_END_EVENTS.get(run.Status)
    if event_type is None:
        return
    data = _run_data(run)
    if run.Error is not None:
        data["error"] = run.Error.model_dump() if hasattr(run.Error, "model_dump") else run.Error
    emit(event_type, run.Id, data, pipeline_id=run.PipelineId, time_utc=run.EndTimeUtc)


def step_event(event_type: str, run_id: str, step: str, pipeline_id: str | None, *, attempt: int | None = None,
               status: str | None = None, error: dict | None = None, reused_from: str | None = None,
               outputs: dict | None = None) -> None:
    data: dict[str, Any] = {"pipelineId": pipeline_id, "step": step, "status": status}
    if attempt is not None:
        data["attempt"] = attempt
    if error:
        data["error"] = error
    if reused_from:
        data["reusedFromRunId"] = reused_from
    if outputs:
        data["outputs"] = outputs
    about = f"{step}/{attempt}" if attempt is not None and event_type == STEP_STARTED else step
    emit(event_type, run_id, data, about=about, pipeline_id=pipeline_id)
