"""Queue submissions over Service Bus (API.md §4): registered only when `MLPIPE_SERVICEBUS_CONNECTION`
is set; a Service Bus queue trigger on `pipeline-submissions` calling the same handler as the
storage queue (shared.submissions via shared.servicebus).

Settlement through the Functions binding: returning completes the message, raising abandons it
(redelivered, and dead-lettered by Service Bus after the queue's MaxDeliveryCount). The Python
binding cannot dead-letter a message itself, so a message that can never succeed is completed and
recorded, with its reason, on `pipeline-submissions-poison` (the storage poison queue, same shape).
shared.servicebus.settle dead-letters with the reason wherever the code holds the lock itself.
Not run here: no Service Bus emulator; the boundary is tested with azure-servicebus's own types.
"""

from __future__ import annotations

import asyncio

import azure.durable_functions as df
import azure.functions as func

from functions.run_starter import start_run
from shared.servicebus import COMPLETE, DEAD_LETTER, outcome_of
from shared.settings import get_settings
from shared.submissions import send_to_poison

bp = df.Blueprint()



class TransientSubmissionError(RuntimeError):
    """Raised so the Functions host abandons the message and Service Bus redelivers it."""


async def process_functions_message(msg: func.ServiceBusMessage, client: df.DurableOrchestrationClient) -> str:
    """Handle one message from the Functions binding; the action taken (raises for a retry)."""
    raw = msg.get_body()
    outcome = await asyncio.to_thread(outcome_of, raw, msg.message_id)
    if outcome.action == DEAD_LETTER:
        await asyncio.to_thread(send_to_poison, outcome.reason or "poison", raw, get_settings().submissions_queue)
        return DEAD_LETTER
    if outcome.action != COMPLETE:
        raise TransientSubmissionError(outcome.reason or "transient failure")
    await start_run(client, outcome.start)
    return COMPLETE


if get_settings().servicebus_connection:
    @bp.service_bus_queue_trigger(arg_name="msg", queue_name="%MLPIPE_SUBMISSIONS_QUEUE%",
                                  connection="MLPIPE_SERVICEBUS_CONNECTION")
    @bp.durable_client_input(client_name="client")
    async def servicebus_submission(msg: func.ServiceBusMessage, client: df.DurableOrchestrationClient) -> None:
        await process_functions_message(msg, client)
