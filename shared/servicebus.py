"""Service Bus submissions at their boundary (azure-servicebus): message conversion and settlement.

A submission arrives as an azure-servicebus `ServiceBusReceivedMessage` (or, through the Functions
binding, an `azure.functions.ServiceBusMessage`: functions/servicebus.py). `outcome_of` runs the one
submission handler (shared.submissions) and says how to settle:

- started / duplicate  -> complete
- can never succeed    -> dead-letter at once, `reason` = the handler's reason (API.md §4)
- transient failure    -> abandon (redelivered; Service Bus dead-letters it after MaxDeliveryCount)

`settle` applies that on a receiver holding the message lock (an azure-servicebus `ServiceBusReceiver`
in PEEK_LOCK mode). `receive_and_process` is a complete peek-lock consumer built from the two.
The Service Bus message id is the fallback message id (a body `"MessageId"` wins), so a message
delivered twice starts one run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shared.errors import MlpipeError
from shared.redact import redact
from shared.submissions import PoisonMessage, RunStart, handle_submission

log = logging.getLogger("mlpipe.servicebus")

COMPLETE, ABANDON, DEAD_LETTER = "complete", "abandon", "dead-letter"
MAX_DESCRIPTION = 4096  # Service Bus limits the dead-letter description; keep well inside it


@dataclass(frozen=True)
class Outcome:
    action: str  # COMPLETE | ABANDON | DEAD_LETTER
    start: RunStart | None = None
    reason: str | None = None


def body_of(message: Any) -> bytes:
    """The body bytes of an azure-servicebus message (a data body is a sequence of byte sections)."""
    body = message.body
    if isinstance(body, (bytes, bytearray)):
        return bytes(body)
    if isinstance(body, str):
        return body.encode("utf-8")
    return b"".join(part if isinstance(part, (bytes, bytearray)) else str(part).encode("utf-8") for part in body)


def message_id_of(message: Any) -> str | None:
    value = getattr(message, "message_id", None)
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    return str(value) if value else None


def outcome_of(raw: bytes, message_id: str | None) -> Outcome:
    try:
        return Outcome(COMPLETE, start=handle_submission(raw, message_id, run_source="ServiceBus"))
    except PoisonMessage as error:
        return Outcome(DEAD_LETTER, reason=redact(error.message))
    except MlpipeError as error:
        log.warning("Service Bus message %s: transient failure, abandoning: %s", message_id, redact(error.message))
        return Outcome(ABANDON, reason=redact(error.message))


def settle(receiver: Any, message: Any, outcome: Outcome) -> None:
    """Complete, abandon or dead-letter `message` on the receiver that holds its lock."""
    if outcome.action == COMPLETE:
        receiver.complete_message(message)
    elif outcome.action == DEAD_LETTER:
        receiver.dead_letter_message(message, reason="PoisonMessage",
                                     error_description=(outcome.reason or "")[:MAX_DESCRIPTION])
    else:
        receiver.abandon_message(message)


def receive_and_process(receiver: Any, start_run: Callable[[RunStart], None], max_messages: int = 16,
                        max_wait_time: float = 1.0) -> int:
    """One batch from a PEEK_LOCK receiver: handle each message, start its run, settle it. Messages handled."""
    messages = receiver.receive_messages(max_message_count=max_messages, max_wait_time=max_wait_time)
    for message in messages:
        outcome = outcome_of(body_of(message), message_id_of(message))
        if outcome.action == COMPLETE and outcome.start is not None:
            try:
                start_run(outcome.start)
            except Exception as error:  # noqa: BLE001 - starting failed: redeliver
                log.warning("Service Bus message %s: starting run failed: %s", message_id_of(message),
                            redact(str(error)))
                outcome = Outcome(ABANDON, reason=redact(str(error)))
        settle(receiver, message, outcome)
    return len(messages)
