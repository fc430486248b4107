"""Starting a run exactly once from a trigger, and the one handler of queued submissions (API.md §4).

Every trigger (queue message, Service Bus message, schedule due time, datastore change window)
derives a **deterministic run id** from what it is handling, so a second delivery or a second
host creates nothing new: `RunStore.create_run` is create-only, and the Durable instance id is
the run id. `submit_once` creates the run record (or finds it) and says what to start;
functions/run_starter.py starts the orchestration unless it exists already.

A submission message is a submit body (API.md §3) plus `"PipelineId"` or `"EndpointName"` and
optionally `"MessageId"` (else the transport's message id). A message that can never succeed
(bad JSON, unknown pipeline, bad parameter, disabled target) raises PoisonMessage with the
reason; infrastructure trouble raises TransientError/StorageError, which the trigger host retries.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timezone

from pydantic import ValidationError

from shared import control
from shared.errors import Conflict, InvalidRequest, MlpipeError, NotFound
from shared.pipelines import get_published
from shared.queues import decode_message_text, send_text
from shared.runs import RunRecord, RunStore
from shared.settings import get_settings
from shared.statuses import RunStatus

log = logging.getLogger("mlpipe.submissions")

MAX_MESSAGE_ID = 256


class PoisonMessage(MlpipeError):
    """A message that can never succeed: it goes to the poison queue / dead-letter queue with `reason`."""

    code = "PoisonMessage"
    status = 400


@dataclass(frozen=True)
class RunStart:
    """What a trigger must start: the run id and, if the orchestration may be missing, its input.

    `created`: this call created the run record (start the orchestration). Otherwise the run was
    there already (a duplicate): start the orchestration only if it does not exist yet and the run
    is still Queued (a crash between writing the run and starting it).
    """

    run_id: str
    orchestration_input: dict | None
    created: bool


def deterministic_run_id(kind: str, key: str, when: datetime | None = None) -> str:
    """`mlpipe_<yyyymmddHHMMSS>_<hex>`-style id derived only from (kind, key[, when]).

    With `when` (a schedule's due time) the id reads like every other run id; without it the time
    part is replaced by the kind (`mlpipe_msg_<20 hex>`), since a message has no stable time.
    """
    digest = hashlib.sha256(f"{kind}\n{key}\n{when.isoformat() if when else ''}".encode()).hexdigest()
    if when is not None:
        return f"mlpipe_{when.astimezone(timezone.utc):%Y%m%d%H%M%S}_{digest[:8]}"
    return f"mlpipe_{kind}_{digest[:20]}"


def orchestration_input_for(run: RunRecord) -> dict | None:
    """The pipeline_run input for an existing run; None if the run is past Queued (nothing to start)."""
    if run.Status != RunStatus.QUEUED.value or not run.PipelineId:
        return None
    published = get_published(run.PipelineId)
    return {"runId": run.Id, "steps": published.definition.dependencies(),
            "continueOnStepFailure": bool(run.ContinueOnStepFailure)}


def _existing(run_id: str) -> RunStart | None:
    try:
        run = RunStore().get_run(run_id, with_steps=False)
    except NotFound:
        return None
    return RunStart(run_id, orchestration_input_for(run), created=False)


def submit_once(body: dict, run_id: str, *, pipeline_id: str | None = None,
                endpoint_name: str | None = None) -> RunStart:
    """Create run `run_id` for the pipeline or endpoint (its default version now), unless it exists.

    Errors from the submit (InvalidRequest, NotFound, Conflict PipelineDisabled) propagate.
    """
    existing = _existing(run_id)
    if existing is not None:
        return existing
    try:
        if endpoint_name is not None:
            submission = control.submit_to_endpoint(endpoint_name, body, run_id=run_id)
        else:
            submission = control.submit(pipeline_id, body, run_id=run_id)
    except Conflict as error:
        if error.code != "Conflict":  # PipelineDisabled / EndpointDisabled
            raise
        existing = _existing(run_id)  # another host created it a moment ago
        if existing is None:
            raise
        return existing
    return RunStart(submission.run_id, submission.orchestration_input, created=True)


# --- queued submissions -------------------------------------------------------------------------
def parse_submission(raw: bytes | str) -> tuple[str, dict]:
    """(message text, body); PoisonMessage if it is not a JSON object naming a target."""
    text = decode_message_text(raw)
    try:
        body = json.loads(text)
    except ValueError as error:
        raise PoisonMessage(f"message: not valid JSON ({error})") from None
    if not isinstance(body, dict):
        raise PoisonMessage(f"message: expected a JSON object, got {type(body).__name__}")
    pipeline_id, endpoint_name = body.get("PipelineId"), body.get("EndpointName")
    if bool(pipeline_id) == bool(endpoint_name):
        raise PoisonMessage("message: give exactly one of PipelineId and EndpointName")
    for field, value in (("PipelineId", pipeline_id), ("EndpointName", endpoint_name)):
        if value is not None and not isinstance(value, str):
            raise PoisonMessage(f"{field}: expected a string, got {type(value).__name__}")
    message_id = body.get("MessageId")
    if message_id is not None and (not isinstance(message_id, str) or not 0 < len(message_id) <= MAX_MESSAGE_ID):
        raise PoisonMessage(f"MessageId: expected a string of 1-{MAX_MESSAGE_ID} characters")
    return text, body


def handle_submission(raw: bytes | str, transport_message_id: str | None, run_source: str = "Queue") -> RunStart:
    """The one handler behind the storage-queue and Service Bus triggers.

    The run id comes from `"MessageId"` (or the transport's message id) and the target, so a
    message delivered twice starts one run. Raises PoisonMessage for a message that can never
    succeed; other errors are transient (retry).
    """
    text, body = parse_submission(raw)
    message_id = body.get("MessageId") or transport_message_id
    if not message_id:
        raise PoisonMessage("MessageId: the message has no id (give \"MessageId\")")
    target = f"pipeline:{body['PipelineId']}" if body.get("PipelineId") else f"endpoint:{body['EndpointName']}"
    run_id = deterministic_run_id("msg", f"{target}\n{message_id}")
    submit_body = {k: v for k, v in body.items() if k not in ("PipelineId", "EndpointName", "MessageId")}
    submit_body.setdefault("RunSource", run_source)
    try:
        return submit_once(submit_body, run_id, pipeline_id=body.get("PipelineId"),
                           endpoint_name=body.get("EndpointName"))
    except (InvalidRequest, NotFound) as error:
        raise PoisonMessage(error.message) from None
    except Conflict as error:
        if error.code in ("PipelineDisabled", "EndpointDisabled"):
            raise PoisonMessage(error.message) from None
        raise
    except ValidationError as error:
        raise PoisonMessage(_validation_reason(error)) from None


def _validation_reason(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(part) for part in item.get("loc", ())) or "message"
        parts.append(f"{where}: {item.get('msg')}")
    return "; ".join(parts)


def poison_body(reason: str, original_text: str) -> str:
    """What goes to the poison queue (API.md §4): `{"reason", "message": <original text>}`."""
    return json.dumps({"reason": reason, "message": original_text})


def poison_queue_name(queue: str | None = None) -> str:
    return f"{queue or get_settings().submissions_queue}-poison"


def send_to_poison(reason: str, raw: bytes | str, queue: str | None = None) -> None:
    text = decode_message_text(raw)
    log.warning("submission poisoned: %s", reason)
    send_text(poison_queue_name(queue), poison_body(reason, text))
