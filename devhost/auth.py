"""The function key: where it comes from, and how a request proves it knows it."""

from __future__ import annotations

import base64
import hmac
import os
import secrets
from pathlib import Path

KEY_SETTING = "MLPIPE_FUNCTION_KEY"
KEY_HEADER = "x-functions-key"
KEY_QUERY = "code"


def load_or_create_key(data_dir: Path) -> tuple[str, Path | None]:
    """Return (key, path of the generated key file or None when the key came from the setting)."""
    configured = os.environ.get(KEY_SETTING)
    if configured:
        return configured, None
    path = data_dir / "function-key"
    if path.is_file():
        key = path.read_text(encoding="utf-8").strip()
        if key:
            return key, path
    data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(key + "\n")
    os.chmod(path, 0o600)
    return key, path


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


class KeyChecker:
    """Accepts the function key (header or `code` query) and, for the durable webhooks only,
    the host's internal RPC secret sent as HTTP Basic credentials (see durable/client_binding.py)."""

    def __init__(self, function_key: str, rpc_secret: str):
        self.function_key = function_key
        self.rpc_secret = rpc_secret

    def has_function_key(self, headers, query) -> bool:
        supplied = headers.get(KEY_HEADER) or query.get(KEY_QUERY)
        return bool(supplied) and _same(supplied, self.function_key)

    def has_rpc_secret(self, headers) -> bool:
        value = headers.get("Authorization", "")
        if not value.startswith("Basic "):
            return False
        try:
            _, _, password = base64.b64decode(value[6:]).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return _same(password, self.rpc_secret)

    def secrets(self) -> list[str]:
        return [self.function_key, self.rpc_secret]
