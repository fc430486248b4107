"""An Azurite with two storage accounts: data_transfer copies across accounts on it for real.

(Azurite copies between accounts of one instance; it cannot reach another instance's URLs.)
"""

from __future__ import annotations

import base64
import os
from contextlib import contextmanager
from pathlib import Path

from devhost.azurite import free_port, start_azurite
from shared.settings import AZURITE_ACCOUNT, AZURITE_KEY

SECOND_ACCOUNT = "archive1"
SECOND_KEY = base64.b64encode(b"mlpipe-second-test-account-key!!").decode()


def connection_string(port: int, account: str = AZURITE_ACCOUNT, key: str = AZURITE_KEY) -> str:
    return (f"DefaultEndpointsProtocol=http;AccountName={account};AccountKey={key};"
            f"BlobEndpoint=http://127.0.0.1:{port}/{account};")


@contextmanager
def two_account_azurite(location: Path):
    """Yields (process, first account connection string, second account connection string)."""
    previous = os.environ.get("AZURITE_ACCOUNTS")
    os.environ["AZURITE_ACCOUNTS"] = f"{AZURITE_ACCOUNT}:{AZURITE_KEY};{SECOND_ACCOUNT}:{SECOND_KEY}"
    try:
        process = start_azurite(location, blob_port=free_port(), queue_port=free_port())
    finally:
        if previous is None:
            os.environ.pop("AZURITE_ACCOUNTS", None)
        else:
            os.environ["AZURITE_ACCOUNTS"] = previous
    try:
        yield process, process.connection_string, connection_string(process.blob_port, SECOND_ACCOUNT, SECOND_KEY)
    finally:
        process.stop()
