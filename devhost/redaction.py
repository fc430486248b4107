"""Keep secrets out of logs: the function key, the RPC secret and any `code=` query value."""

from __future__ import annotations

import logging

from shared.redact import redact


class Redactor:
    """The host's own secrets (function key, RPC secret, of any length) on top of shared.redact's
    patterns, registered secrets and secret-looking settings."""

    def __init__(self) -> None:
        self._secrets: list[str] = []

    def add(self, *values: str) -> None:
        for value in values:
            if value and value not in self._secrets:
                self._secrets.append(value)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return redact(text)


REDACT = Redactor()


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            self._redact(record)
        except Exception:  # e.g. during interpreter shutdown; never let logging break the host
            record.msg, record.args = "[log record dropped by redaction]", None
            record.exc_info, record.exc_text = None, None
        return True

    @staticmethod
    def _redact(record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.msg = REDACT(message)
        record.args = None
        if record.exc_text:
            record.exc_text = REDACT(record.exc_text)


def setup_logging(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
