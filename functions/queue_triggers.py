"""Queue submissions (API.md §4): a storage-queue trigger on `pipeline-submissions`.

Thin: shared.submissions.handle_submission does the work. A message that can never succeed is
written to `pipeline-submissions-poison` as `{"reason", "message"}` and the function returns
normally (the host deletes the original); anything else raises and the host retries it
(visibility timeout, dequeue count, and after `maxDequeueCount` (5) the host's own poison queue).

host.json sets `extensions.queues.messageEncoding` to `none`, so base64 (what Functions and the
Storage SDKs write by default) and plain JSON messages both reach the handler, which decodes either.
"""

from __future__ import annotations

import asyncio
import logging
import os

import azure.durable_functions as df
import azure.functions as func

from functions.run_starter import start_run
from shared.settings import Settings, get_settings
from shared.submissions import PoisonMessage, handle_submission, send_to_poison

bp = df.Blueprint()
log = logging.getLogger("mlpipe.triggers")

# The host resolves %MLPIPE_SUBMISSIONS_QUEUE% from app settings (default `pipeline-submissions`, API.md §4;
# another name lets several apps, or test hosts, share one storage account).
os.environ.setdefault("MLPIPE_SUBMISSIONS_QUEUE", Settings.submissions_queue)


@bp.queue_trigger(arg_name="msg", queue_name="%MLPIPE_SUBMISSIONS_QUEUE%", connection="AzureWebJobsStorage")
@bp.durable_client_input(client_name="client")
async def queue_submission(msg: func.QueueMessage, client: df.DurableOrchestrationClient) -> None:
    raw = msg.get_body()
    try:  # storage calls on a worker thread: the event loop keeps serving other invocations
        start = await asyncio.to_thread(handle_submission, raw, msg.id, "Queue")
    except PoisonMessage as error:
        await asyncio.to_thread(send_to_poison, error.message, raw, get_settings().submissions_queue)
        return
    await start_run(client, start)
