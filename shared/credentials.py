"""Credentials for remote compute, resolved from a compute entry's *non-secret* settings.

A compute entry in a definition never holds a secret; it says where one comes from:

    credential: default            # DefaultAzureCredential (the Function App's managed identity in Azure)
    managed_identity_client_id: ID # a user-assigned managed identity
    tenant_id + client_id + client_secret_setting: NAME   # a service principal; the secret is app setting NAME
    token_setting: NAME            # app setting NAME holds a token (a Databricks PAT, or a bearer token)

Secrets are read through `shared.settings.secret_setting` when a client is built, registered with
`shared.redact` so they are scrubbed from every message of this process, and never stored in a
handle, a run record or a log. `secret_keys_in` lets the definition validator refuse a secret
written into the definition itself.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.errors import ComputeError
from shared.redact import register_secret
from shared.settings import secret_setting

# Keys of a compute entry that say how to authenticate (all non-secret).
AUTH_KEYS = ("credential", "managed_identity_client_id", "tenant_id", "client_id", "client_secret_setting",
             "token_setting")
_SECRET_NAMES = {"token", "password", "secret", "client_secret", "access_key", "account_key", "api_key", "pat",
                 "connection_string", "sas", "sas_token", "access_token", "personal_access_token"}
_SECRET_SUFFIXES = ("_token", "_password", "_secret", "_key", "_pat")


def is_secret_key(key: str) -> bool:
    """A settings key that would hold a secret value (`token`, `client_secret`, `account_key`...)."""
    lowered = str(key).lower()
    return lowered in _SECRET_NAMES or lowered.endswith(_SECRET_SUFFIXES)


def secret_keys_in(settings: Mapping[str, Any], where: str) -> list[str]:
    """Dotted locations of secret-looking keys anywhere in `settings` (for validation messages)."""
    found = []
    for key, value in settings.items():
        if is_secret_key(key):
            found.append(f"{where}.{key}")
        if isinstance(value, Mapping):
            found += secret_keys_in(value, f"{where}.{key}")
    return found


def read_secret(setting: str, compute: str) -> str:
    """The value of app setting `setting`, registered for redaction; ComputeError naming the setting
    (never a value) when it is not set."""
    value = secret_setting(str(setting))
    if not value:
        raise ComputeError(f"compute '{compute}': app setting '{setting}' (named by the compute entry) is not set")
    register_secret(value)
    return value


@dataclass
class StaticTokenCredential:
    """An azure-core TokenCredential over a fixed bearer token (from a named app setting)."""

    token: str = field(repr=False)
    lifetime_seconds: int = 3600

    def get_token(self, *scopes: str, **kwargs: Any):
        from azure.core.credentials import AccessToken

        return AccessToken(self.token, int(time.time()) + self.lifetime_seconds)


_credentials: dict[tuple, Any] = {}
_lock = threading.Lock()


def azure_credential(settings: Mapping[str, Any], compute: str):
    """The azure-core TokenCredential a compute entry asks for (cached per kind: azure-identity
    credentials keep their own token cache, which is what makes them cheap to reuse)."""
    if settings.get("token_setting"):
        return StaticTokenCredential(read_secret(settings["token_setting"], compute))
    if settings.get("client_secret_setting"):
        tenant, client = settings.get("tenant_id"), settings.get("client_id")
        if not tenant or not client:
            raise ComputeError(f"compute '{compute}': client_secret_setting needs tenant_id and client_id")
        secret = read_secret(settings["client_secret_setting"], compute)
        key: tuple = ("sp", tenant, client, settings["client_secret_setting"])
        return _cached(key, lambda: _client_secret_credential(tenant, client, secret))
    if settings.get("managed_identity_client_id"):
        client = settings["managed_identity_client_id"]
        return _cached(("mi", client), lambda: _managed_identity(client))
    credential = settings.get("credential", "default")
    if credential not in ("default", "managed_identity"):
        raise ComputeError(f"compute '{compute}': credential must be 'default' or 'managed_identity', "
                           f"not {credential!r}")
    return _cached(("default", credential), lambda: _default_credential(credential))


def _cached(key: tuple, build):
    with _lock:
        if key not in _credentials:
            _credentials[key] = build()
        return _credentials[key]


def _client_secret_credential(tenant: str, client: str, secret: str):
    from azure.identity import ClientSecretCredential

    return ClientSecretCredential(tenant, client, secret)


def _managed_identity(client_id: str):
    from azure.identity import ManagedIdentityCredential

    return ManagedIdentityCredential(client_id=client_id)


def _default_credential(kind: str):
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

    return ManagedIdentityCredential() if kind == "managed_identity" else DefaultAzureCredential()


def forget_credentials() -> None:
    """Drop cached credentials (tests that change settings)."""
    with _lock:
        _credentials.clear()
