"""shared.storage: client caching, container creation, and the exception boundary."""

from __future__ import annotations

import pytest
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
)

from shared.errors import Conflict, NotFound, StorageError, TransientError
from shared.settings import get_settings
from shared.storage import blob_service, ensure_container, is_account_url, parallel_map, translate_storage_errors


def test_client_is_cached_per_connection_string(storage_env):
    assert blob_service() is blob_service(get_settings().storage_connection)
    other = storage_env.connection_string.replace("127.0.0.1", "localhost")
    assert blob_service(other) is not blob_service()


def test_ensure_container_creates_once_and_tolerates_existing(storage_env):
    name = get_settings().blobstore_container
    client = ensure_container(name)
    assert client.exists()
    assert ensure_container(name).container_name == name  # cached: no second create call
    from shared.storage import forget_containers

    forget_containers()
    ensure_container(name)  # create again -> "already exists" is not an error


def test_account_url_detection():
    assert is_account_url("https://acct.blob.core.windows.net")
    assert not is_account_url("DefaultEndpointsProtocol=https;AccountName=a;AccountKey=k")


class _Response:
    def __init__(self, status):
        self.status_code = status
        self.reason = "x"
        self.headers = {}

    def text(self):
        return ""


@pytest.mark.parametrize("raised, expected", [
    (ResourceNotFoundError("gone"), NotFound),
    (ResourceExistsError("there"), Conflict),
    (ResourceModifiedError("etag"), Conflict),
    (ClientAuthenticationError("no"), StorageError),
    (ServiceRequestError("connection refused"), TransientError),
])
def test_azure_errors_become_ours_with_the_cause_kept(raised, expected):
    with pytest.raises(expected) as info, translate_storage_errors("blob 'a/b'"):
        raise raised
    assert "blob 'a/b'" in info.value.message
    assert info.value.__cause__ is raised


@pytest.mark.parametrize("status, expected", [(503, TransientError), (429, TransientError), (400, StorageError)])
def test_http_status_decides_transient_or_not(status, expected):
    error = HttpResponseError(message="boom", response=_Response(status))
    with pytest.raises(expected) as info, translate_storage_errors("thing"):
        raise error
    assert str(status) in info.value.message


def test_parallel_map_keeps_order_and_runs_inline_for_one_item():
    assert parallel_map(lambda x: x * 2, range(20)) == [x * 2 for x in range(20)]
    import threading

    assert parallel_map(lambda _: threading.current_thread().name, [0]) == [threading.current_thread().name]
