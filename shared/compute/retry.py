"""Resilience shared by the remote backends: classify an error, retry transient ones.

Transient: HTTP 408, 429 and 5xx, connection resets, timeouts. They are retried with
exponential backoff and full jitter (base * 2^n, capped, times a random factor), and a
`Retry-After` the service sent is honoured (never waited less than that). Anything else is
permanent and raised at once. After the last attempt a TransientError is raised, naming what
was being done and the last cause (redacted). Settings: MLPIPE_COMPUTE_RETRY_ATTEMPTS,
MLPIPE_COMPUTE_RETRY_BASE_SECONDS, MLPIPE_COMPUTE_RETRY_MAX_SECONDS.
"""

from __future__ import annotations

import email.utils
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from shared.errors import TransientError
from shared.redact import redact
from shared.settings import get_settings

log = logging.getLogger("mlpipe.compute.retry")

RETRY_AFTER_CEILING_SECONDS = 120.0
TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
T = TypeVar("T")


@dataclass(frozen=True)
class Transient:
    """Why an error is worth retrying, and how long the service asked us to wait (if it did)."""

    reason: str
    retry_after: float | None = None


Classifier = Callable[[BaseException], Transient | None]


@dataclass
class RetryPolicy:
    attempts: int = 5
    base_seconds: float = 0.5
    max_seconds: float = 30.0
    sleep: Callable[[float], None] = time.sleep

    @classmethod
    def from_settings(cls) -> RetryPolicy:
        settings = get_settings()
        return cls(attempts=max(1, settings.compute_retry_attempts),
                   base_seconds=max(0.0, settings.compute_retry_base_seconds),
                   max_seconds=max(0.0, settings.compute_retry_max_seconds))

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        backoff = min(self.max_seconds, self.base_seconds * (2 ** (attempt - 1)))
        jittered = backoff * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not crypto
        if retry_after is not None:
            # Never sooner than the service asked (bounded, so one activity cannot block for an
            # hour), plus a little jitter so callers that were throttled together spread out.
            return max(jittered, min(retry_after, RETRY_AFTER_CEILING_SECONDS) + random.random() * 0.1)  # noqa: S311
        return jittered


def retry_call(fn: Callable[[], T], classify: Classifier, what: str, policy: RetryPolicy | None = None) -> T:
    """`fn()`, retried while `classify` calls its error transient; TransientError when attempts run out."""
    policy = policy or RetryPolicy.from_settings()
    attempt = 1
    while True:
        try:
            return fn()
        except Exception as error:  # noqa: BLE001 - classified below; permanent errors re-raised
            transient = classify(error)
            if transient is None:
                raise
            if attempt >= policy.attempts:
                raise TransientError(redact(f"{what}: still failing after {attempt} attempts "
                                            f"({transient.reason})")) from error
            wait = policy.delay(attempt, transient.retry_after)
            log.warning("%s: %s; retry %d in %.2fs", what, redact(transient.reason), attempt, wait)
            policy.sleep(wait)
            attempt += 1


def parse_retry_after(value: str | None) -> float | None:
    """A Retry-After header: delta seconds or an HTTP date; None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def classify_status(status: int | None, retry_after: str | None = None) -> Transient | None:
    """Transient for 408/429/5xx, honouring Retry-After; None otherwise."""
    if status is not None and (status in TRANSIENT_STATUS or status >= 500):
        return Transient(f"HTTP {status}", parse_retry_after(retry_after))
    return None


def is_connection_error(error: BaseException) -> bool:
    """Connection refused/reset/dropped or timed out, at any layer we use (requests, azure-core, stdlib)."""
    import requests
    from azure.core.exceptions import ServiceRequestError, ServiceResponseError

    return isinstance(error, (requests.ConnectionError, requests.Timeout, ServiceRequestError, ServiceResponseError,
                              ConnectionError, TimeoutError))
