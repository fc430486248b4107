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


@pytest.mark.parametrize("page_size", [None, 2])
def test_blob_metadata_lists_names_and_metadata_as_the_sdk_does(storage_env, page_size):
    from shared.storage import blob_metadata

    container = ensure_container(get_settings().system_container)
    names = ["list/a.json", "list/b & <c>.json", "list/é ü.json", "list/d.json", "list/sub/inner.json", "other/x"]
    for index, name in enumerate(names):
        container.upload_blob(name, b"{}", metadata={"Record": f'{{"n": {index}, "text": "<&>"}}', "kind": "k"})
    container.upload_blob("list/plain.json", b"{}")  # no metadata
    expected = {blob.name: {key.lower(): value for key, value in blob.metadata.items()}
                for blob in container.list_blobs(name_starts_with="list/", include=["metadata"])}

    assert dict(blob_metadata(container, "list/", page_size=page_size)) == expected
    assert expected["list/b & <c>.json"] == {"record": '{"n": 1, "text": "<&>"}', "kind": "k"}
    assert expected["list/plain.json"] == {}
    folder = dict(blob_metadata(container, "list/", delimiter="/", page_size=page_size))
    assert folder == {name: value for name, value in expected.items() if name != "list/sub/inner.json"}


def test_blob_metadata_reads_through_the_sdk_when_its_hook_is_not_called(storage_env):
    """An SDK that stopped calling raw_response_hook still lists, every page."""
    from shared.storage import blob_metadata

    container = ensure_container(get_settings().system_container)
    for index in range(5):
        container.upload_blob(f"hookless/{index}.json", b"{}", metadata={"n": str(index)})

    class HooklessContainer:
        def list_blobs(self, raw_response_hook=None, **options):
            return container.list_blobs(**options)

        def walk_blobs(self, raw_response_hook=None, **options):
            return container.walk_blobs(**options)

    for delimiter in (None, "/"):
        assert dict(blob_metadata(HooklessContainer(), "hookless/", delimiter, page_size=2)) == {
            f"hookless/{index}.json": {"n": str(index)} for index in range(5)}


def test_blob_metadata_of_a_missing_container_raises_the_sdks_error(storage_env):
    from shared.storage import blob_metadata

    missing = blob_service().get_container_client("no-such-container-here")
    with pytest.raises(ResourceNotFoundError):
        list(blob_metadata(missing, "x/"))
