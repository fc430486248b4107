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


def _secret_values() -> list[str]:
    values = sorted(_registered, key=len, reverse=True)
    for name, value in os.environ.items():
        if value and len(value) >= 8 and (name in SECRET_SETTINGS or name.endswith(("_KEY", "_SECRET", "_TOKEN", "_PASSWORD"))):
            values.append(value)
    return values


def redact(text: str) -> str:
    if not text:
        return text
    for value in _secret_values():
        text = text.replace(value, "***")
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + "***", text)
    return text
