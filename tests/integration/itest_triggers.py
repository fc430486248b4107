"""Helpers for the trigger integration tests: a one-step pipeline, queue access, run counting."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

from azure.storage.queue import QueueClient
from itest_pipelines import publish, step, write_pipeline

from shared.client import PipelineClient


def publish_quick_pipeline(client: PipelineClient, folder: Path, name: str = "quick", extra_params: dict | None = None,
                           datasets: dict | None = None, inputs: dict | None = None) -> dict:
    definition = {"name": name, "parameters": {"marker_dir": str(folder / "marker"), **(extra_params or {})},
                  "steps": [step("only", inputs=inputs, outputs=["out"])]}
    if datasets:
        definition["datasets"] = datasets
    return publish(client, write_pipeline(folder, definition))


def queue(connection: str, name: str) -> QueueClient:
    client = QueueClient.from_connection_string(connection, name)
    try:
        client.create_queue()
    except Exception:  # noqa: BLE001 - exists
        pass
    return client


def send_json(connection: str, name: str, body, *, encoding: str = "base64") -> None:
    text = body if isinstance(body, str) else json.dumps(body)
    if encoding == "base64":
        text = base64.b64encode(text.encode("utf-8")).decode("ascii")
    queue(connection, name).send_message(text)


def decode(text: str) -> str:
    try:
        return base64.b64decode(text, validate=True).decode("utf-8")
    except Exception:  # noqa: BLE001 - plain text
        return text


def drain(connection: str, name: str, wait: float = 0.0, expect: int = 0) -> list[str]:
    """Every message on the queue (deleted as read), decoded; waits up to `wait` s for `expect` of them."""
    client = queue(connection, name)
    found: list[str] = []
    deadline = time.monotonic() + wait
    while True:
        for message in client.receive_messages(messages_per_page=32, visibility_timeout=30):
            found.append(decode(message.content))
            client.delete_message(message)
        if len(found) >= expect or time.monotonic() >= deadline:
            return found
        time.sleep(0.2)


def runs_of(client: PipelineClient, experiment: str) -> list[dict]:
    return client.request("GET", "/api/runs", query={"experiment": experiment, "top": 1000})["value"]


def wait_for_runs(client: PipelineClient, experiment: str, count: int, timeout: float = 60.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        runs = runs_of(client, experiment)
        if len(runs) >= count or time.monotonic() > deadline:
            return runs
        time.sleep(0.2)


def wait_finished(client: PipelineClient, run_id: str, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        run = client.request("GET", f"/api/runs/{run_id}")
        if run["Status"] in ("Finished", "Failed", "Canceled") or time.monotonic() > deadline:
            return run
        time.sleep(0.2)
