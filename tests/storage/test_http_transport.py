"""The http.client transport under the real storage SDKs, against Azurite over HTTP and HTTPS."""

from __future__ import annotations

import os

import pytest
from azure.core.exceptions import (
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
)
from azure.core.pipeline.transport import RequestsTransport
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueClient

from devhost.azurite import free_port, start_azurite
from shared.errors import MlpipeError
from shared.http_transport import HttpClientTransport
from shared.settings import reset_settings
from shared.storage import BLOCK_SIZE, GET_CHUNK_SIZE, storage_transport
from tests.settings_env import use_settings


def blob_client(connection: str, transport) -> BlobServiceClient:
    return BlobServiceClient.from_connection_string(
        connection, transport=transport, max_single_put_size=BLOCK_SIZE, max_block_size=BLOCK_SIZE,
        max_single_get_size=GET_CHUNK_SIZE, max_chunk_get_size=GET_CHUNK_SIZE, retry_total=0)


@pytest.fixture(autouse=True)
def default_transport(monkeypatch):
    """These tests are about the default transport, whatever this machine's environment says."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy",
                 "MLPIPE_HTTP_TRANSPORT"):
        monkeypatch.delenv(name, raising=False)
    yield from use_settings({}, monkeypatch)


def test_the_storage_transport_is_http_client_unless_a_proxy_or_the_setting_says_otherwise(monkeypatch):
    assert isinstance(storage_transport(), HttpClientTransport)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    assert isinstance(storage_transport(), RequestsTransport)  # requests honours the proxy
    monkeypatch.delenv("HTTPS_PROXY")

    monkeypatch.setenv("MLPIPE_HTTP_TRANSPORT", "requests")
    reset_settings()
    assert isinstance(storage_transport(), RequestsTransport)
    monkeypatch.setenv("MLPIPE_HTTP_TRANSPORT", "urllib")
    reset_settings()
    with pytest.raises(MlpipeError, match="MLPIPE_HTTP_TRANSPORT must be one of http.client, requests, "
                                           "not 'urllib'"):
        storage_transport()


def test_blob_operations_round_trip_on_few_connections(azurite):
    transport = storage_transport()
    container = blob_client(azurite.connection_string, transport).get_container_client(f"tr{os.urandom(4).hex()}")
    container.create_container()
    payload = os.urandom(2 * BLOCK_SIZE + 12345)  # staged blocks up, ranged streamed reads down

    container.upload_blob("big.bin", payload, metadata={"kind": "test"})
    assert container.download_blob("big.bin", max_concurrency=1).readall() == payload
    assert container.download_blob("big.bin", offset=BLOCK_SIZE, length=10).readall() == payload[BLOCK_SIZE:][:10]
    assert container.get_blob_client("big.bin").get_blob_properties().metadata == {"kind": "test"}  # HEAD
    container.upload_blob("claim", b"", overwrite=False)
    with pytest.raises(ResourceExistsError):
        container.upload_blob("claim", b"", overwrite=False)
    with pytest.raises(ResourceNotFoundError):
        container.download_blob("missing").readall()
    assert sorted(blob.name for blob in container.list_blobs()) == ["big.bin", "claim"]
    for index in range(30):
        container.upload_blob(f"small/{index}", b"x", overwrite=True)

    # One thread, one request at a time: every request after the first reused the same connection.
    assert transport.connections_opened == 1


def test_files_stream_up_and_down_in_blocks_on_several_connections(azurite, tmp_path):
    transport = storage_transport()
    container = blob_client(azurite.connection_string, transport).get_container_client(f"tr{os.urandom(4).hex()}")
    container.create_container()
    source, copy = tmp_path / "source.bin", tmp_path / "copy.bin"
    source.write_bytes(os.urandom(2 * BLOCK_SIZE + 999))  # three blocks, the last one short
    with open(source, "rb") as stream:  # file-like block bodies, sent by up to 3 threads at once
        container.upload_blob("file.bin", stream, length=source.stat().st_size, max_concurrency=3)
    with open(copy, "wb") as sink:
        container.download_blob("file.bin", max_concurrency=3).readinto(sink)
    assert copy.read_bytes() == source.read_bytes()
    # ~16 requests (blocks, block list, 1 MiB ranges) on a few connections: one per thread at most
    assert transport.connections_opened <= 6


def test_queue_messages_round_trip(azurite):
    transport = storage_transport()
    queue = QueueClient.from_connection_string(azurite.connection_string, f"tr{os.urandom(4).hex()}",
                                               transport=transport)
    queue.create_queue()
    queue.send_message('{"type": "mlpipe.StepCompleted"}')
    assert [message.content for message in queue.receive_messages()] == ['{"type": "mlpipe.StepCompleted"}']
    assert transport.connections_opened == 1


def self_signed_certificate(cert_path, key_path) -> None:
    """A one-day certificate for 127.0.0.1 (cryptography comes with azure-identity)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                                  critical=False)
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                   .sign(key, hashes.SHA256()))
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption()))


@pytest.fixture(scope="module")
def tls_azurite(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    self_signed_certificate(cert, key)
    process = start_azurite(folder / "data", blob_port=free_port(), queue_port=free_port(), tls=(cert, key))
    yield process, cert
    process.stop()


def test_https_verifies_the_server_certificate(tls_azurite, monkeypatch):
    process, cert = tls_azurite
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))  # as requests would pick the CA bundle
    transport = storage_transport()
    container = blob_client(process.connection_string, transport).get_container_client("tls")
    container.create_container()
    container.upload_blob("secure", b"over tls")
    assert container.download_blob("secure").readall() == b"over tls"
    assert transport.connections_opened == 1

    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    untrusting = blob_client(process.connection_string, storage_transport()).get_container_client("tls")
    with pytest.raises(ServiceRequestError, match="CERTIFICATE_VERIFY_FAILED"):
        untrusting.download_blob("secure").readall()
