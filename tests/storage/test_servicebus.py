"""Service Bus at its boundary, with azure-servicebus's own types (no Service Bus emulator runs here):
message conversion, settlement (complete / abandon / dead-letter with the reason) through a real
`ServiceBusReceiver`'s public methods, and run events sent to a topic through a real `ServiceBusSender`.
Only the AMQP link underneath (`_settle_message`, `_send`) is replaced by a recorder."""

from __future__ import annotations

import json

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage, ServiceBusReceivedMessage
from azure.servicebus._pyamqp.message import Header, Message, Properties

from shared import events
from shared.servicebus import (
    ABANDON,
    COMPLETE,
    DEAD_LETTER,
    Outcome,
    body_of,
    message_id_of,
    outcome_of,
    receive_and_process,
    settle,
)
from shared.settings import reset_settings

FAKE = "Endpoint=sb://mlpipe-test.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey=c2VjcmV0"


def received(body: bytes, message_id: str = "m-1", delivery_count: int = 0) -> ServiceBusReceivedMessage:
    amqp = Message(data=[body], properties=Properties(message_id=message_id.encode()),
                   header=Header(delivery_count=delivery_count))
    return ServiceBusReceivedMessage(amqp, receiver=None, frame=None)


@pytest.fixture
def receiver(monkeypatch):
    """A real PEEK_LOCK ServiceBusReceiver whose AMQP settlement call is recorded instead of sent."""
    client = ServiceBusClient.from_connection_string(FAKE)
    sb_receiver = client.get_queue_receiver("pipeline-submissions")
    settled = []

    def record(message, settle_operation, dead_letter_reason=None, dead_letter_error_description=None, **_):
        settled.append((message.message_id, settle_operation, dead_letter_reason, dead_letter_error_description))

    monkeypatch.setattr(sb_receiver, "_settle_message", record)
    monkeypatch.setattr(sb_receiver, "_open", lambda: None)
    sb_receiver._running = True  # as after receiving: the link is up
    sb_receiver.settled = settled
    return sb_receiver


def test_conversion_reads_body_and_message_id():
    message = received(b'{"PipelineId": "p"}', "abc", 3)
    assert body_of(message) == b'{"PipelineId": "p"}'
    assert message_id_of(message) == "abc"
    assert message.delivery_count == 3


@pytest.mark.parametrize("outcome, operation", [
    (Outcome(COMPLETE), "complete"), (Outcome(ABANDON, reason="x"), "abandon"),
    (Outcome(DEAD_LETTER, reason="ExperimentName: Field required"), "dead-letter")])
def test_settlement_goes_through_the_receivers_own_methods(receiver, outcome, operation):
    message = received(b"{}", "m-7")
    message._receiver = receiver
    settle(receiver, message, outcome)
    assert len(receiver.settled) == 1
    message_id, settle_operation, reason, description = receiver.settled[0]
    assert message_id == "m-7"
    assert settle_operation == operation  # the SDK's own operation names
    if outcome.action == DEAD_LETTER:
        assert reason == "PoisonMessage" and description == "ExperimentName: Field required"


def test_a_bad_message_is_dead_lettered_at_once_with_the_reason(receiver):
    messages = [received(b"{not json", "bad-1")]
    receiver.receive_messages = lambda **_: messages
    messages[0]._receiver = receiver
    started = []
    assert receive_and_process(receiver, started.append) == 1
    assert started == []
    (_, operation, reason, description), = receiver.settled
    assert operation == "dead-letter" and reason == "PoisonMessage" and "not valid JSON" in description


def test_outcome_of_poison_and_of_unknown_pipeline(storage_env):
    assert outcome_of(b'{"ExperimentName": "x"}', "m").action == DEAD_LETTER
    unknown = outcome_of(json.dumps({"PipelineId": "nope", "ExperimentName": "x"}).encode(), "m")
    assert unknown.action == DEAD_LETTER and "nope" in unknown.reason


def test_run_events_go_to_a_topic_as_cloudevents(monkeypatch):
    monkeypatch.setenv("MLPIPE_RUN_EVENTS", "servicebus")
    monkeypatch.setenv("MLPIPE_SERVICEBUS_CONNECTION", FAKE)
    reset_settings()
    sent = []
    from azure.servicebus import ServiceBusSender

    monkeypatch.setattr(ServiceBusSender, "_open", lambda self: None)
    monkeypatch.setattr(ServiceBusSender, "_send", lambda self, message, timeout=None, last_exception=None:
                        sent.append(message))
    events._topics.clear()
    try:
        event = events.emit(events.RUN_STARTED, "run-1", {"status": "Running"}, pipeline_id="p-1")
        again = events.cloud_event(events.RUN_STARTED, "run-1", {"status": "Running"}, pipeline_id="p-1")
    finally:
        events._topics.clear()
        reset_settings()
    assert event["id"] == again["id"]  # stable per event
    assert len(sent) == 1
    message = sent[0]
    assert isinstance(message, ServiceBusMessage)
    assert message.message_id == event["id"] and message.subject == "run-1"
    body = json.loads(str(message))
    assert body["specversion"] == "1.0" and body["type"] == "mlpipe.RunStarted" and body["subject"] == "run-1"
    properties = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
                  for k, v in message.application_properties.items()}
    assert properties["cloudEvents:type"] == "mlpipe.RunStarted"


class RecordingClient:
    """Stands in for the Durable client binding: records start_new; knows the instances it started."""

    def __init__(self):
        self.started = []

    async def get_status(self, instance_id):
        from types import SimpleNamespace

        known = any(started[1] == instance_id for started in self.started)
        return SimpleNamespace(runtime_status="Running") if known else None

    async def start_new(self, name, instance_id, client_input):
        self.started.append((name, instance_id, client_input))


def functions_message(body: bytes, message_id: str):
    from azure.functions.servicebus import ServiceBusMessage as FunctionsMessage

    return FunctionsMessage(body=body, message_id=message_id, application_properties={}, user_properties={},
                            delivery_count=1)


def test_functions_binding_path_poisons_with_reason_and_starts_valid_messages_once(storage_env, tmp_path):
    """functions/servicebus.py with the Functions binding's own message type, on Azurite storage."""
    import asyncio

    from functions.servicebus import COMPLETE, DEAD_LETTER, process_functions_message
    from shared.control import publish_json
    from shared.queues import queue_client
    from shared.submissions import decode_message_text

    client = RecordingClient()
    bad = functions_message(b'{"PipelineId": "missing", "ExperimentName": "x"}', "sb-1")
    assert asyncio.run(process_functions_message(bad, client)) == DEAD_LETTER
    poison = queue_client("pipeline-submissions-poison")
    (entry,) = [json.loads(decode_message_text(m.content)) for m in poison.receive_messages()]
    assert "missing" in entry["reason"] and json.loads(entry["message"])["PipelineId"] == "missing"

    pipeline = publish_json({"definition": {"name": "sb", "steps": [
        {"name": "a", "type": "data_transfer", "inputs": {"src": "datasets.raw"}, "outputs": ["out"]}],
        "datasets": {"raw": {"datastore": "workspaceblobstore", "path": "in"}}}})
    good = functions_message(json.dumps({"PipelineId": pipeline["Id"], "ExperimentName": "sb"}).encode(), "sb-2")
    assert asyncio.run(process_functions_message(good, client)) == COMPLETE
    assert asyncio.run(process_functions_message(good, client)) == COMPLETE  # redelivered
    assert len(client.started) == 1  # the second delivery found the run (its record exists)
    name, run_id, payload = client.started[0]
    assert name == "pipeline_run" and payload["runId"] == run_id and run_id.startswith("mlpipe_msg_")
