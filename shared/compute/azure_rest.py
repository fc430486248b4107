"""A small JSON REST client on azure-core for the Azure ML and ADLA backends.

azure-core's pipeline does the HTTP and the Azure AD bearer token (BearerTokenCredentialPolicy
with any azure-identity credential); retries are ours (shared/compute/retry.py) so every remote
backend backs off the same way: 408/429/5xx and dropped connections, exponential with jitter,
honouring Retry-After. Permanent errors become ComputeError carrying the service's own message
(`{"error": {"code", "message"}}`), redacted.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlparse

from azure.core import PipelineClient
from azure.core.pipeline.policies import BearerTokenCredentialPolicy, HeadersPolicy, UserAgentPolicy
from azure.core.rest import HttpRequest

from shared.compute.retry import Transient, classify_status, is_connection_error, retry_call
from shared.errors import ComputeError, TransientError
from shared.http_transport import azure_transport
from shared.redact import redact

REST_POOL_SIZE = 4  # a client polls a few jobs at a time


class ServiceError(ComputeError):
    """A permanent HTTP error from a compute service; `status` and the service's `error_code` kept."""

    def __init__(self, message: str, status: int, error_code: str = ""):
        super().__init__(message)
        self.status = status
        self.error_code = error_code


class _Answer(Exception):
    """Carries a retryable HTTP answer out of one attempt so retry_call can classify it."""

    def __init__(self, status: int, retry_after: str | None, message: str):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


def _classify(error: BaseException) -> Transient | None:
    if isinstance(error, _Answer):
        return classify_status(error.status, error.retry_after)
    if is_connection_error(error):
        return Transient(type(error).__name__)
    return None


def _is_loopback(url: str) -> bool:
    return (urlparse(url).hostname or "") in ("127.0.0.1", "localhost", "::1")


def service_message(body: Any, fallback: str) -> tuple[str, str]:
    """(code, message) from an Azure error body: {"error": {"code", "message", "details"}} or flat."""
    if isinstance(body, dict):
        error = body.get("error") if isinstance(body.get("error"), dict) else body
        code = str(error.get("code") or "")
        message = str(error.get("message") or error.get("Message") or "")
        if message:
            return code, message
    return "", fallback


class JsonRestClient:
    def __init__(self, endpoint: str, credential, scope: str, service: str, api_version: str):
        self.endpoint = endpoint.rstrip("/")
        self.service = service
        self.api_version = api_version
        # Bearer tokens over plain HTTP only to this machine (the contract servers in tests).
        self._insecure_ok = self.endpoint.startswith("http://") and _is_loopback(self.endpoint)
        self._client = PipelineClient(
            base_url=self.endpoint,
            policies=[HeadersPolicy({"Accept": "application/json"}), UserAgentPolicy(sdk_moniker="mlpipe"),
                      BearerTokenCredentialPolicy(credential, scope)],
            transport=azure_transport(pool_size=REST_POOL_SIZE, connection_timeout=10, read_timeout=60),
        )

    def call(self, method: str, path: str, what: str, body: Any = None, ok_missing: bool = False,
             params: dict | None = None) -> tuple[int, Any]:
        """(status, JSON body). 404 with `ok_missing` answers (404, None); other 4xx raise
        ServiceError; transient failures are retried, then raise TransientError."""
        query = {"api-version": self.api_version, **(params or {})}

        def attempt() -> tuple[int, Any]:
            request = HttpRequest(method, f"{self.endpoint}{path}", params=query,
                                  json=body if body is not None else None)
            options = {"enforce_https": False} if self._insecure_ok else {}
            response = self._client.send_request(request, **options)
            status = response.status_code
            try:
                payload = response.json() if response.content else None
            except (ValueError, json.JSONDecodeError):
                payload = None
            if status == 404 and ok_missing:
                return 404, None
            if classify_status(status) is not None:
                raise _Answer(status, response.headers.get("Retry-After"), f"HTTP {status}")
            if status >= 400:
                code, message = service_message(payload, response.text()[:500] if response.content else "")
                raise ServiceError(redact(f"{what}: {self.service} answered {status} {code}: {message}".rstrip(": ")),
                                   status, code)
            return status, payload

        try:
            return retry_call(attempt, _classify, f"{what} ({self.service})")
        except (ComputeError, TransientError):
            raise
        except Exception as error:  # noqa: BLE001 - azure-core/auth errors: name the type, keep the cause
            raise ComputeError(redact(f"{what}: {self.service} request failed ({type(error).__name__}: {error})")) \
                from error

    def cancel(self, path: str, what: str) -> None:
        """POST a job's cancel action. A job that is not there (404) or already ended (the service
        answers 400 or 409) is left as it is; other refusals raise ServiceError."""
        try:
            self.call("POST", path, what, ok_missing=True)
        except ServiceError as error:
            if error.status not in (400, 409):
                raise
