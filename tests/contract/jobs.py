"""What a remote job does in the contract tests: read its inputs and write its outputs by storage URI.

The contract servers call these when a scripted job "runs", so the data path (URIs handed to
the service, blobs written there, the backend committing them) is exercised for real on Azurite.
"""

from __future__ import annotations

from urllib.parse import unquote, urlparse

from azure.storage.blob import BlobServiceClient


def split_uri(uri: str) -> tuple[str, str]:
    """(container, path) of an Azurite https URI http://host:port/account/container/path."""
    parts = unquote(urlparse(uri).path).lstrip("/").split("/", 2)
    return parts[1], (parts[2] if len(parts) > 2 else "").rstrip("/")


def write_blob(connection: str, uri: str, name: str, data: bytes) -> None:
    container, path = split_uri(uri)
    service = BlobServiceClient.from_connection_string(connection)
    service.get_blob_client(container, f"{path}/{name}" if path else name).upload_blob(data, overwrite=True)


def read_blobs(connection: str, uri: str) -> bytes:
    """Every blob under a folder URI (or the one blob), concatenated in name order."""
    container, path = split_uri(uri)
    client = BlobServiceClient.from_connection_string(connection).get_container_client(container)
    names = sorted(b.name for b in client.list_blobs(name_starts_with=path)
                   if b.name == path or b.name.startswith(path + "/"))
    return b"".join(client.download_blob(name).readall() for name in names)
