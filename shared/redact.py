"""Remove secrets from text before it reaches a log line, a run record or an error message."""

from __future__ import annotations

import os
import re

_PATTERNS = [
    re.compile(r"(AccountKey=)[^;\s]+", re.IGNORECASE),
    re.compile(r"(SharedAccessKey=)[^;\s]+", re.IGNORECASE),
    re.compile(r"(sig=)[^&\s]+", re.IGNORECASE),
    re.compile(r"([?&]code=)[^&\s]+", re.IGNORECASE),
    re.compile(r"(x-functions-key['\"]?\s*[:=]\s*['\"]?)[^'\"\s,}]+", re.IGNORECASE),
    re.compile(r"(Bearer\s+)[A-Za-z0-9\-._~+/]+=*", re.IGNORECASE),
    re.compile(r"(dapi)[0-9a-f]{16,}", re.IGNORECASE),
    re.compile(r"(https?://)[^/@\s:]+:[^/@\s]+(?=@)", re.IGNORECASE),  # user:password@ in a URL
]

# Settings whose values are secrets wherever they appear verbatim.
SECRET_SETTINGS = ("MLPIPE_FUNCTION_KEY", "AzureWebJobsStorage", "MLPIPE_SERVICEBUS_CONNECTION",
                   "DATABRICKS_TOKEN", "AZURE_CLIENT_SECRET")


# Secret values read at run time from settings a definition names (e.g. a compute's token_setting):
# their setting names follow no pattern, so the code that reads them registers the values here.
_registered: set[str] = set()


def register_secret(value: str | None) -> None:
    """Redact `value` wherever it appears from now on, in this process."""
    if value and len(value) >= 8:
        _registered.add(value)


SECRET_SUFFIXES = ("_KEY", "_SECRET", "_TOKEN", "_PASSWORD")


def is_secret_setting(name: str, value: str | None) -> bool:
    """Whether an environment variable holds a secret: a known secret setting, a name that says
    so (`..._KEY`, `..._SECRET`, `..._TOKEN`, `..._PASSWORD`), or a value registered as secret."""
    if not value:
        return False
    return (name in SECRET_SETTINGS or name.split("__", 1)[0] in SECRET_SETTINGS
            or name.upper().endswith(SECRET_SUFFIXES) or value in _registered)


def _secret_values() -> list[str]:
    values = sorted(_registered, key=len, reverse=True)
    values += [value for name, value in os.environ.items() if len(value or "") >= 8 and is_secret_setting(name, value)]
    return values


def redact(text: str) -> str:
    if not text:
        return text
    for value in _secret_values():
        text = text.replace(value, "***")
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + "***", text)
    return text
