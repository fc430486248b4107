"""Blob triggers, as the Functions host's polling blob trigger (`LogsAndContainerScan`) runs them.

Per blob-triggered function (`path` = `container/prefix{name}`, `%SETTING%` expanded): scan the
container every `MLPIPE_BLOB_SCAN_SECONDS` (default 0.5) and call the function once for every blob
version (name + ETag) that has no **blob receipt** yet. The receipt is written after the function
succeeds, in the host container `azure-webjobs-hosts` as the Functions host writes it
(`blobreceipts/<host id>/<function>/<etag>/<container>/<blob>`), so each blob version triggers
once, also across restarts and across hosts sharing the storage account; overwriting a blob (a
new ETag) triggers again. A function that fails is retried at the next scans; after 5 failures
the blob is reported on the `webjobs-blobtrigger-poison` queue (as the host does) and receipted.

The function gets an `azure.functions.blob.InputStream` whose content is downloaded only when it
is read (the host downloads it up front; for a trigger that only needs the name, that saves
reading every uploaded file).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from typing import Any

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.functions.blob import InputStream
from azure.storage.blob.aio import BlobServiceClient
from azure.storage.queue import TextBase64EncodePolicy
from azure.storage.queue.aio import QueueClient

from .app_loader import BindingTriggerFunction
from .invocation import with_context
from .queue_triggers import connection_for, expand_setting_refs

log = logging.getLogger("devhost.blobs")

HOSTS_CONTAINER = "azure-webjobs-hosts"
POISON_QUEUE = "webjobs-blobtrigger-poison"
MAX_ATTEMPTS = 5
CONCURRENCY = 16


class LazyBlobStream(InputStream):
    """InputStream whose bytes are fetched from storage on the first read (from a worker thread)."""

    def __init__(self, *, fetch, **kwargs):
        super().__init__(data=b"", **kwargs)
        self._fetch = fetch
        self._loaded = False

    def read(self, size=-1) -> bytes:
        if not self._loaded:
            import io
            self._io = io.BytesIO(self._fetch())
            self._loaded = True
        return self._io.read(size)

    read1 = read


def split_path(path: str) -> tuple[str, str]:
    """`container/prefix/{name}` -> (container, literal blob-name prefix)."""
    container, _, rest = path.strip("/").partition("/")
    prefix = rest.split("{", 1)[0]
    return container.lower(), prefix


def _clean_etag(etag: str) -> str:
    return etag.strip('"')


class BlobWatcher:
    """One blob-triggered function: scan, invoke, receipt."""

    def __init__(self, function: BindingTriggerFunction, call, binding_json: str, host_id: str,
                 scan_seconds: float):
        self.function = function
        self.call = call
        self.binding_json = binding_json
        self.scan_seconds = scan_seconds
        self.host_id = host_id
        self.container_name, self.prefix = split_path(expand_setting_refs(function.settings["path"]))
        self.connection = connection_for(function.settings.get("connection"))
        self.service = BlobServiceClient.from_connection_string(self.connection)
        self.container = self.service.get_container_client(self.container_name)
        self.hosts = self.service.get_container_client(HOSTS_CONTAINER)
        self.receipted: set[tuple[str, str]] = set()  # (blob name, etag)
        self.in_flight: set[tuple[str, str]] = set()
        self.failures: dict[tuple[str, str], int] = {}
        self._semaphore = asyncio.Semaphore(CONCURRENCY)
        self._tasks: set[asyncio.Task] = set()

    @property
    def receipt_prefix(self) -> str:
        return f"blobreceipts/{self.host_id}/{self.function.name}/"

    def receipt_name(self, blob: str, etag: str) -> str:
        return f"{self.receipt_prefix}{_clean_etag(etag)}/{self.container_name}/{blob}"

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.service.close()

    async def _load_receipts(self) -> None:
        try:
            await self.hosts.create_container()
        except ResourceExistsError:
            pass
        async for blob in self.hosts.list_blobs(name_starts_with=self.receipt_prefix):
            rest = blob.name[len(self.receipt_prefix):]
            etag, _, tail = rest.partition("/")
            container, _, name = tail.partition("/")
            if container == self.container_name:
                self.receipted.add((name, etag))

    async def run(self) -> None:
        while True:
            try:
                await self._load_receipts()
                break
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("blob trigger %s: reading receipts failed; retrying", self.function.name)
                await asyncio.sleep(self.scan_seconds)
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                await self.scan()
            except asyncio.CancelledError:
                raise
            except ResourceNotFoundError:
                pass  # the container does not exist (yet)
            except Exception:
                log.exception("blob trigger %s: scan failed", self.function.name)
            # A large container makes a scan slow: then scan less often (at most half the time scanning).
            await asyncio.sleep(max(self.scan_seconds, loop.time() - started))

    async def scan(self) -> int:
        """Dispatch every blob version without a receipt; the number dispatched."""
        found = 0
        async for blob in self.container.list_blobs(name_starts_with=self.prefix or None):
            key = (blob.name, _clean_etag(blob.etag))
            if key in self.receipted or key in self.in_flight:
                continue
            self.in_flight.add(key)
            found += 1
            task = asyncio.ensure_future(self._dispatch(blob, key))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return found

    async def _dispatch(self, blob, key: tuple[str, str]) -> None:
        async with self._semaphore:
            try:
                await self._invoke(blob)
                await self._receipt(key)
                self.failures.pop(key, None)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                attempts = self.failures.get(key, 0) + 1
                self.failures[key] = attempts
                log.warning("blob trigger %s failed on %s/%s (attempt %d): %r", self.function.name,
                            self.container_name, blob.name, attempts, exc)
                if attempts >= MAX_ATTEMPTS:
                    await self._poison(blob, key)
            finally:
                self.in_flight.discard(key)

    async def _invoke(self, blob) -> None:
        blob_client = self.container.get_blob_client(blob.name)
        from azure.storage.blob import BlobClient  # sync client for a read from the function's thread

        sync_client = BlobClient.from_connection_string(self.connection, self.container_name, blob.name)

        def fetch() -> bytes:
            return sync_client.download_blob().readall()

        stream = LazyBlobStream(fetch=fetch, name=f"{self.container_name}/{blob.name}", uri=blob_client.url,
                                length=blob.size,
                                blob_properties={"ETag": blob.etag, "Length": blob.size,
                                                 "LastModified": blob.last_modified.isoformat()
                                                 if blob.last_modified else None},
                                metadata=dict(blob.metadata or {}))
        kwargs: dict[str, Any] = {self.function.trigger_arg: stream}
        for name in self.function.client_args:
            kwargs[name] = self.binding_json
        with_context(kwargs, self.function.wants_context, self.function.name)
        await self.call(self.function.user_function, kwargs)

    async def _receipt(self, key: tuple[str, str]) -> None:
        name, etag = key
        try:
            await self.hosts.upload_blob(self.receipt_name(name, etag), b"", overwrite=True)
        except ResourceNotFoundError:
            await self.hosts.create_container()
            await self.hosts.upload_blob(self.receipt_name(name, etag), b"", overwrite=True)
        self.receipted.add(key)

    async def _poison(self, blob, key: tuple[str, str]) -> None:
        message = json.dumps({"Type": "BlobTrigger", "FunctionId": self.function.name,
                              "BlobType": "BlockBlob", "ContainerName": self.container_name,
                              "BlobName": blob.name, "ETag": blob.etag})
        queue = QueueClient.from_connection_string(self.connection, POISON_QUEUE,
                                                   message_encode_policy=TextBase64EncodePolicy())
        async with queue:
            try:
                await queue.create_queue()
            except ResourceExistsError:
                pass
            await queue.send_message(message)
        await self._receipt(key)


class BlobTriggers:
    """Every blob-triggered function of the app (started and stopped by devhost/host.py)."""

    def __init__(self, functions: list[BindingTriggerFunction], call, binding_json: str, host_id: str):
        scan_seconds = float(os.environ.get("MLPIPE_BLOB_SCAN_SECONDS") or 0.5)
        self.watchers = [BlobWatcher(f, call, binding_json, host_id, scan_seconds) for f in functions]
        self._tasks: list[asyncio.Task] = []

    def start(self) -> None:
        for watcher in self.watchers:
            self._tasks.append(asyncio.ensure_future(watcher.run()))
            log.info("blob trigger %s: container '%s' prefix '%s'", watcher.function.name, watcher.container_name,
                     watcher.prefix)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for watcher in self.watchers:
            await watcher.close()
