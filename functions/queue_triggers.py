"""Queue submissions (API.md §4): a storage-queue trigger on `pipeline-submissions`.

Thin: shared.submissions.handle_submission does the work. A message that can never succeed is
written to `pipeline-submissions-poison` as `{"reason", "message"}` and the function returns
normally (the host deletes the original); anything else raises and the host retries it
(visibility timeout, dequeue count, and after `maxDequeueCount` (5) the host's own poison queue).

host.json sets `extensions.queues.messageEncoding` to `none`, so base64 (what Functions and the
Storage SDKs write by default) and plain JSON messages both reach the handler, which decodes either.
"""

from __future__ import annotations

import logging

import azure.durable_functions as df
import azure.functions as func

from functions.run_starter import start_run
from shared.submissions import PoisonMessage, handle_submission, send_to_poison

bp = df.Blueprint()
log = logging.getLogger("mlpipe.triggers")

SUBMISSIONS_QUEUE = "pipeline-submissions"


@bp.queue_trigger(arg_name="msg", queue_name=SUBMISSIONS_QUEUE, connection="AzureWebJobsStorage")
@bp.durable_client_input(client_name="client")
async def queue_submission(msg: func.QueueMessage, client: df.DurableOrchestrationClient) -> None:
    raw = msg.get_body()
    try:
        start = handle_submission(raw, msg.id, run_source="Queue")
    except PoisonMessage as error:
        send_to_poison(error.message, raw, SUBMISSIONS_QUEUE)
        return
    await start_run(client, start)
