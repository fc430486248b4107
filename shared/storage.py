"""The one place that builds Azure Storage clients and turns storage exceptions into ours.

Clients are cached per connection string: building a BlobServiceClient is cheap, but its
HTTP session (connection pool) is what makes later calls fast, so it must be shared.
Nothing here ever formats a connection string, key or SAS into a message.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar
from urllib.parse import unquote

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline.transport import HttpTransport
from azure.storage.blob import BlobServiceClient, ContainerClient, ExponentialRetry

from shared.errors import Conflict, MlpipeError, NotFound, StorageError, TransientError
from shared.http_transport import azure_transport
from shared.settings import get_settings

# azure-core logs every request and response (headers included) at INFO. A Functions host logs
# INFO by default, so that would be a line per blob call: slow, noisy, and a place secrets hide.
logging.getLogger("azure.core.pipeline.policies.http_logging_policy").setLevel(logging.WARNING)

# Blobs up to this size go in one request; bigger ones are streamed in blocks of this size
# (the SDK would otherwise buffer up to 64 MiB of a file in memory for a single put).
BLOCK_SIZE = 4 * 1024 * 1024
# Download range size. Kept small on purpose: azure-storage-blob joins each range with
# `b"".join(list(stream))`, and list() pre-sizes itself from the stream's __len__ (its byte count),
# so every in-flight range briefly costs ~9x its size. 1 MiB ranges bound that to ~9 MiB per
# connection; 4 MiB ranges measured 150 MB peak for one blob at 4 connections.
GET_CHUNK_SIZE = 1024 * 1024
# Upload/download concurrency for one large blob, and for many files at once.
BLOB_CONCURRENCY = 4
FILE_CONCURRENCY = 8
# Large enough for FILE_CONCURRENCY files each using BLOB_CONCURRENCY connections.
CONNECTION_POOL_SIZE = 64
CONNECT_TIMEOUT_SECONDS = 10
READ_TIMEOUT_SECONDS = 120

_clients: dict[str, BlobServiceClient] = {}
_containers_ready: dict[tuple[str, str], ContainerClient] = {}  # created (or found) once per process
_lock = threading.Lock()


def _retry_policy() -> ExponentialRetry:
    """Backoff ~0.5s, 2.5s, 4.5s, 8.5s (+/- jitter): rides out Azure throttling and 5xx and an
    Azurite that is still starting, without making a dead endpoint hang for minutes."""
    return ExponentialRetry(initial_backoff=0.5, increment_base=2, retry_total=4, random_jitter_range=1)


def storage_transport(pool_size: int = CONNECTION_POOL_SIZE) -> HttpTransport:
    """The transport of the blob and queue clients (shared/http_transport.py azure_transport)."""
    return azure_transport(pool_size=pool_size, connection_timeout=CONNECT_TIMEOUT_SECONDS,
                           read_timeout=READ_TIMEOUT_SECONDS)


def is_account_url(value: str) -> bool:
    return value.strip().lower().startswith(("https://", "http://"))


def _build_client(connection: str) -> BlobServiceClient:
    options = dict(
        retry_policy=_retry_policy(),
        transport=storage_transport(),
        max_single_put_size=BLOCK_SIZE,
        max_block_size=BLOCK_SIZE,
        max_single_get_size=GET_CHUNK_SIZE,
        max_chunk_get_size=GET_CHUNK_SIZE,
    )
    if is_account_url(connection):
        from azure.identity import DefaultAzureCredential

        return BlobServiceClient(account_url=connection.strip(), credential=DefaultAzureCredential(), **options)
    try:
        return BlobServiceClient.from_connection_string(connection, **options)
    except ValueError as exc:
        # The SDK's message does not echo the string; ours must not either.
        raise StorageError("the storage setting is neither a valid connection string nor an account URL") from exc


def blob_service(connection: str | None = None) -> BlobServiceClient:
    """The BlobServiceClient for `connection` (default: the AzureWebJobsStorage setting), cached."""
    connection = connection or get_settings().storage_connection
    client = _clients.get(connection)
    if client is None:
        with _lock:
            client = _clients.get(connection)
            if client is None:
                client = _clients[connection] = _build_client(connection)
    return client


def ensure_container(name: str, connection: str | None = None) -> ContainerClient:
    """A client for container `name`, created if missing; the create is attempted once per process."""
    connection = connection or get_settings().storage_connection
    key = (connection, name)
    client = _containers_ready.get(key)
    if client is None:  # a ContainerClient costs ~0.2 ms to build: one per container, kept
        client = blob_service(connection).get_container_client(name)
        with translate_storage_errors(f"container '{name}'"), contextlib.suppress(ResourceExistsError):
            client.create_container()
        _containers_ready[key] = client
    return client


def forget_containers() -> None:
    """Forget which containers exist (after something deleted one, e.g. in tests)."""
    _containers_ready.clear()


def lower_keys(metadata: dict[str, str] | None) -> dict[str, str]:
    """Blob metadata with lower-case names (services and emulators differ in how they case them)."""
    return {key.lower(): value for key, value in (metadata or {}).items()}


class _ListingPage(Exception):
    """Carries a List Blobs page out of the SDK's pipeline before the SDK deserializes it."""

    def __init__(self, body: bytes) -> None:
        super().__init__("a List Blobs page")
        self.body = body


def _take_listing_page(response) -> None:
    """raw_response_hook: a page that came back (200) leaves as _ListingPage; any other answer goes
    on to the SDK (its retries and errors)."""
    if response.http_response.status_code == 200:
        raise _ListingPage(response.http_response.body())


def _parse_listing_page(body: bytes) -> tuple[list[tuple[str, dict[str, str]]], str | None]:
    """([(blob name, metadata with lower-case keys)], next marker) of a List Blobs response body
    (BlobPrefix entries, i.e. sub-folders, are left out)."""
    root = ElementTree.fromstring(body)
    entries = []
    for blob in root.iterfind("Blobs/Blob"):
        name_element = blob.find("Name")
        name = name_element.text or ""
        if name_element.get("Encoded") == "true":
            name = unquote(name)
        metadata = blob.find("Metadata")
        entries.append((name, {} if metadata is None else {item.tag.lower(): item.text or "" for item in metadata}))
    return entries, root.findtext("NextMarker") or None


def blob_metadata(container: ContainerClient, prefix: str, delimiter: str | None = None,
                  page_size: int | None = None) -> Iterator[tuple[str, dict[str, str]]]:
    """(name, metadata with lower-case keys) of each blob under `prefix` (with `delimiter`, not in
    its sub-folders), page by page as they are read (pages of `page_size`; the service's default 5,000).

    The SDK's generic XML deserializer costs ~0.15 ms of CPU per listed blob (half of reading a run of
    50 steps); the List Blobs response, a documented REST format, is parsed here with ElementTree
    instead, taken from the SDK's response hook before it deserializes the page. The request, its
    signing, retries and errors stay the SDK's. Should the hook not be called, the SDK's own listing
    is used.
    """
    marker = None
    while True:
        options = {"name_starts_with": prefix, "include": ["metadata"], "results_per_page": page_size,
                   "raw_response_hook": _take_listing_page}
        listing = container.walk_blobs(delimiter=delimiter, **options) if delimiter else container.list_blobs(**options)
        pages = listing.by_page(continuation_token=marker)
        try:
            page = next(pages, None)
        except _ListingPage as taken:
            entries, marker = _parse_listing_page(taken.body)
            yield from entries
            if marker is None:
                return
            continue
        # The hook was not called (an SDK that no longer calls it): this page and the rest as the SDK reads them.
        for page in itertools.chain([] if page is None else [page], pages):
            for blob in page:
                if not delimiter or not blob.name.endswith(delimiter):  # not a sub-folder
                    yield blob.name, lower_keys(blob.metadata)
        return


@contextlib.contextmanager
def translate_storage_errors(what: str) -> Iterator[None]:
    """Re-raise azure.core errors as mlpipe errors whose message names `what` (never a secret).

    Code that wants to act on a specific azure error (412 to retry, 409 for create-only) catches
    it itself inside the block; anything else leaving the block is translated here.
    """
    try:
        yield
    except MlpipeError:
        raise
    except ResourceNotFoundError as exc:
        raise NotFound(f"{what} not found") from exc
    except ResourceExistsError as exc:
        raise Conflict(f"{what} already exists") from exc
    except ResourceModifiedError as exc:
        raise Conflict(f"{what} was changed concurrently") from exc
    except ClientAuthenticationError as exc:
        raise StorageError(f"{what}: storage refused the credentials {_error_code(exc)}".rstrip()) from exc
    except HttpResponseError as exc:
        status = exc.status_code or 0
        detail = f"{what}: storage answered {status} {_error_code(exc)}".rstrip()
        if status == 429 or status >= 500:
            raise TransientError(detail) from exc
        raise StorageError(detail) from exc
    except (ServiceRequestError, ServiceResponseError) as exc:
        raise TransientError(f"{what}: storage unreachable ({type(exc).__name__})") from exc
    except AzureError as exc:
        raise StorageError(f"{what}: storage error ({type(exc).__name__})") from exc


def _error_code(exc: HttpResponseError) -> str:
    code = getattr(exc, "error_code", None) or ""
    return str(getattr(code, "value", code))  # the SDK hands out a StorageErrorCode enum or a str


T = TypeVar("T")
R = TypeVar("R")


def parallel_map(fn: Callable[[T], R], items: Iterable[T], max_workers: int = FILE_CONCURRENCY) -> list[R]:
    """`[fn(x) for x in items]` on a short-lived thread pool; inline when there is one item.

    A pool per call (not a shared one) so a task may itself call parallel_map without the
    deadlock a bounded shared pool would risk; threads start lazily, so the cost is tiny.
    """
    items = list(items)
    if len(items) <= 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(max_workers, len(items)), thread_name_prefix="mlpipe-io") as pool:
        return list(pool.map(fn, items))


MAX_ETAG_ATTEMPTS = 20


def modify_json_record(blob, read: Callable[[], R], change: Callable[[R], bool],
                       metadata_of: Callable[[R], dict], what: str) -> R:
    """Read-modify-write a pydantic record stored as JSON in `blob`, under If-Match.

    `read()` returns the current record with its `_etag`; `change(record)` mutates it and returns
    False when nothing needs writing. A concurrent writer makes the write fail its precondition:
    read and apply again, up to MAX_ETAG_ATTEMPTS times, then Conflict.
    """
    for _attempt in range(MAX_ETAG_ATTEMPTS):
        record = read()
        if not change(record):
            return record
        with translate_storage_errors(what):
            try:
                result = blob.upload_blob(record.model_dump_json().encode("utf-8"), overwrite=True,
                                          metadata=metadata_of(record), etag=record.etag,
                                          match_condition=MatchConditions.IfNotModified)
            except ResourceModifiedError:
                continue
        record._etag = result.get("etag")
        return record
    raise Conflict(f"{what} kept changing; gave up after {MAX_ETAG_ATTEMPTS} attempts")
