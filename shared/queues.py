"""Azure Storage queue clients (azure-storage-queue), built like the blob clients in shared/storage.py.

Messages are written base64-encoded, as the Functions host writes and reads them by default
(`TextBase64EncodePolicy`), so a queue-triggered function with default settings can read them.
Readers accept both base64 and plain text (`decode_message_text`).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import threading

from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import QueueClient, QueueServiceClient, TextBase64EncodePolicy

from shared.settings import get_settings
from shared.storage import is_account_url, storage_transport, translate_storage_errors

QUEUE_POOL_SIZE = 16  # events are sent from up to 16 activities at once
_clients: dict[tuple[str, str], QueueClient] = {}
_lock = threading.Lock()


def _service(connection: str) -> QueueServiceClient:
    if is_account_url(connection):
        from azure.identity import DefaultAzureCredential

        url = connection.strip().replace(".blob.", ".queue.")
        return QueueServiceClient(account_url=url, credential=DefaultAzureCredential(),
                                  transport=storage_transport(QUEUE_POOL_SIZE))
    return QueueServiceClient.from_connection_string(connection, transport=storage_transport(QUEUE_POOL_SIZE))


def queue_client(name: str, connection: str | None = None) -> QueueClient:
    """A client for queue `name` (created if missing, once per process); messages base64-encoded."""
    connection = connection or get_settings().storage_connection
    key = (connection, name)
    client = _clients.get(key)
    if client is None:
        with _lock:
            client = _clients.get(key)
            if client is None:
                client = _service(connection).get_queue_client(name, message_encode_policy=TextBase64EncodePolicy())
                with translate_storage_errors(f"queue '{name}'"), contextlib.suppress(ResourceExistsError):
                    client.create_queue()
                _clients[key] = client
    return client


def send_text(queue: str, text: str, connection: str | None = None) -> str:
    """Put `text` on `queue`; the queue message id."""
    with translate_storage_errors(f"queue '{queue}'"):
        return queue_client(queue, connection).send_message(text).id


def decode_message_text(raw: bytes | str) -> str:
    """A queue message's text: base64 (what Functions writes by default) or plain text, either works."""
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", errors="replace")
    stripped = raw.strip()
    if stripped and not stripped.startswith(("{", "[")):
        try:
            decoded = base64.b64decode(stripped, validate=True)
            return decoded.decode("utf-8")
        except (binascii.Error, ValueError, UnicodeDecodeError):
            pass
    return raw
