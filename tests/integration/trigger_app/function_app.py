"""A small app for testing devhost's queue and blob triggers themselves (retries, poison, receipts).

Every invocation appends a JSON line to $TRIGGER_LOG; a message or blob whose text contains "fail"
makes the function raise.
"""

import json
import os

import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)


def _record(kind: str, **fields) -> None:
    with open(os.environ["TRIGGER_LOG"], "a", encoding="utf-8") as handle:
        handle.write(json.dumps({"kind": kind, **fields}) + "\n")


@app.route(route="ping")
def ping(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("pong")


@app.queue_trigger(arg_name="msg", queue_name="%WORK_QUEUE%", connection="AzureWebJobsStorage")
def work(msg: func.QueueMessage) -> None:
    body = msg.get_body().decode("utf-8")
    _record("queue", id=msg.id, body=body, dequeue_count=msg.dequeue_count)
    if "fail" in body:
        raise RuntimeError("failing on purpose")


@app.blob_trigger(arg_name="blob", path="%WATCHED_CONTAINER%/in/{name}", connection="AzureWebJobsStorage")
def watched(blob: func.InputStream) -> None:
    data = blob.read().decode("utf-8")
    _record("blob", name=blob.name, data=data)
    if "fail" in data:
        raise RuntimeError("failing on purpose")
