"""Storage queue triggers, as the Functions host runs them (azure-storage-queue, Azurite locally).

Per queue-triggered function: poll the queue (exponential back-off from 100 ms up to
`maxPollingInterval` while it is empty), take up to `batchSize` messages with a visibility lock
(renewed while the function runs), and call the function with an `azure.functions.QueueMessage`.
Success deletes the message. A failure makes it visible again after `visibilityTimeout`; once its
dequeue count reaches `maxDequeueCount` it is moved, content unchanged, to `<queue>-poison` (the
host's poison queue). `messageEncoding` `base64` (the default) decodes message text as base64 (a
message that is not valid base64 is passed as is); `none` passes the text unchanged.

Settings come from host.json `extensions.queues` with the Functions defaults.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.functions.queue import QueueMessage
from azure.storage.queue.aio import QueueClient

from shared.settings import expand_connection_string

from .app_loader import BindingTriggerFunction
from .invocation import with_context

log = logging.getLogger("devhost.queues")

LOCK_SECONDS = 30
MIN_POLL_SECONDS = 0.1


def timespan_seconds(value: Any, default: float) -> float:
    """host.json TimeSpan `[d.]hh:mm:ss[.fff]` (or a number of seconds) in seconds."""
    if value is None:
        return default
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip()
    days = 0
    if "." in text.split(":")[0]:
        day_text, text = text.split(".", 1)
        days = int(day_text)
    parts = text.split(":")
    if len(parts) != 3:
        return default
    return days * 86400 + int(parts[0]) * 3600 + int(parts[1]) * 60 + float(parts[2])


@dataclass(frozen=True)
class QueueOptions:
    """host.json `extensions.queues`, with the Functions defaults."""

    max_polling_interval: float = 60.0
    visibility_timeout: float = 0.0
    batch_size: int = 16
    new_batch_threshold: int = 8
    max_dequeue_count: int = 5
    message_encoding: str = "base64"

    @classmethod
    def load(cls, app_root: Path) -> QueueOptions:
        path = app_root / "host.json"
        data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        queues = (data.get("extensions") or {}).get("queues") or {}
        batch = int(queues.get("batchSize", 16))
        return cls(
            max_polling_interval=max(MIN_POLL_SECONDS, timespan_seconds(queues.get("maxPollingInterval"), 60.0)),
            visibility_timeout=timespan_seconds(queues.get("visibilityTimeout"), 0.0),
            batch_size=max(1, min(32, batch)),
            new_batch_threshold=int(queues.get("newBatchThreshold", batch // 2)),
            max_dequeue_count=max(1, int(queues.get("maxDequeueCount", 5))),
            message_encoding=str(queues.get("messageEncoding", "base64")).lower(),
        )


def connection_for(setting: str | None) -> str:
    """The connection string named by a binding's `connection` (default AzureWebJobsStorage)."""
    name = setting or "AzureWebJobsStorage"
    value = os.environ.get(name) or os.environ.get(f"AzureWebJobs{name}") or ""
    if not value and name == "AzureWebJobsStorage":
        value = "UseDevelopmentStorage=true"
    if not value:
        raise RuntimeError(f"the connection setting '{name}' is not set")
    return expand_connection_string(value)


def expand_setting_refs(text: str) -> str:
    """`%NAME%` parts of a binding expression replaced by app settings, as the Functions host does."""
    out, rest = [], text
    while "%" in rest:
        before, _, after = rest.partition("%")
        name, sep, rest = after.partition("%")
        if not sep:
            out.append(before + "%" + name)
            rest = ""
            break
        value = os.environ.get(name)
        if value is None:
            raise RuntimeError(f"binding expression refers to app setting '{name}', which is not set")
        out.append(before + value)
    out.append(rest)
    return "".join(out)


def decode_body(text: str, encoding: str) -> bytes:
    if encoding == "base64":
        try:
            return base64.b64decode(text.strip(), validate=True)
        except (binascii.Error, ValueError):
            return text.encode("utf-8")
    return text.encode("utf-8")


class QueueListener:
    """One queue-triggered function: poll, invoke, settle."""

    def __init__(self, function: BindingTriggerFunction, call: Callable[[Any, dict], Awaitable[Any]],
                 binding_json: str, options: QueueOptions):
        self.function = function
        self.call = call
        self.binding_json = binding_json
        self.options = options
        self.queue_name = expand_setting_refs(function.settings["queueName"]).lower()
        connection = connection_for(function.settings.get("connection"))
        self.queue = QueueClient.from_connection_string(connection, self.queue_name)
        self.poison = QueueClient.from_connection_string(connection, f"{self.queue_name}-poison")
        self._running: set[asyncio.Task] = set()

    async def close(self) -> None:
        for task in list(self._running):
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)
        await self.queue.close()
        await self.poison.close()

    async def run(self) -> None:
        for client in (self.queue, self.poison):
            try:
                await client.create_queue()
            except ResourceExistsError:
                pass
        delay = MIN_POLL_SECONDS
        while True:
            try:
                free = self.options.batch_size + self.options.new_batch_threshold - len(self._running)
                got = 0
                if free > 0 and len(self._running) <= self.options.new_batch_threshold:
                    want = min(self.options.batch_size, free)
                    pager = self.queue.receive_messages(messages_per_page=want, visibility_timeout=LOCK_SECONDS,
                                                        max_messages=want)
                    async for message in pager:
                        got += 1
                        task = asyncio.ensure_future(self._process(message))
                        self._running.add(task)
                        task.add_done_callback(self._running.discard)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("queue %s: receive failed", self.queue_name)
                got = 0
            if got:
                delay = MIN_POLL_SECONDS
                await asyncio.sleep(0)
                continue
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.options.max_polling_interval)

    async def _renew(self, message) -> None:
        while True:
            await asyncio.sleep(LOCK_SECONDS / 2)
            receipt = await self.queue.update_message(message, pop_receipt=message.pop_receipt,
                                                      visibility_timeout=LOCK_SECONDS)
            message.pop_receipt = receipt.pop_receipt

    async def _process(self, message) -> None:
        body = decode_body(message.content or "", self.options.message_encoding)
        request = QueueMessage(id=message.id, body=body, dequeue_count=message.dequeue_count,
                               expiration_time=message.expires_on, insertion_time=message.inserted_on,
                               time_next_visible=message.next_visible_on, pop_receipt=message.pop_receipt)
        kwargs: dict[str, Any] = {self.function.trigger_arg: request}
        for name in self.function.client_args:
            kwargs[name] = self.binding_json
        with_context(kwargs, self.function.wants_context, self.function.name)
        renew = asyncio.ensure_future(self._renew(message))
        try:
            await self.call(self.function.user_function, kwargs)
            failed = None
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the function failed: retry or poison, as the host does
            failed = exc
        finally:
            renew.cancel()
            await asyncio.gather(renew, return_exceptions=True)
        try:
            if failed is None:
                await self.queue.delete_message(message, pop_receipt=message.pop_receipt)
                return
            count = message.dequeue_count or 1
            if count >= self.options.max_dequeue_count:
                log.error("queue %s: message %s failed %d times; moving it to %s-poison: %r", self.queue_name,
                          message.id, count, self.queue_name, failed)
                await self.poison.send_message(message.content)
                await self.queue.delete_message(message, pop_receipt=message.pop_receipt)
            else:
                log.warning("queue %s: function %s failed on message %s (dequeue count %d): %r", self.queue_name,
                            self.function.name, message.id, count, failed)
                await self.queue.update_message(message, pop_receipt=message.pop_receipt,
                                                visibility_timeout=int(self.options.visibility_timeout))
        except ResourceNotFoundError:
            log.warning("queue %s: message %s was gone before it could be settled", self.queue_name, message.id)


class QueueTriggers:
    """Every queue-triggered function of the app (started and stopped by devhost/host.py)."""

    def __init__(self, functions: list[BindingTriggerFunction], call, binding_json: str, app_root: Path):
        options = QueueOptions.load(app_root)
        self.listeners = [QueueListener(f, call, binding_json, options) for f in functions]
        self._tasks: list[asyncio.Task] = []

    def start(self) -> None:
        for listener in self.listeners:
            self._tasks.append(asyncio.ensure_future(listener.run()))
            log.info("queue trigger %s: queue '%s'", listener.function.name, listener.queue_name)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for listener in self.listeners:
            await listener.close()
