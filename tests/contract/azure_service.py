"""What the Azure REST contract servers (aml_service, adla_service) answer alike.

Both Azure services answer errors as `{"error": {"code", "message"}}` with their own codes, want
`Authorization: Bearer <token>` and an `?api-version=` on every call, and refuse a call without
them before routing it. A subclass names its codes, its messages and the api-version it insists
on (None: any).
"""

from __future__ import annotations

from typing import Any

from tests.contract.server import Request, Response, Service

COMMON_ERROR_CODES = {401: "AuthenticationFailed", 409: "Conflict", 429: "TooManyRequests", 500: "InternalServerError",
                      503: "ServiceUnavailable"}


class AzureService(Service):
    error_codes: dict[int, str] = {}      # the service's own codes (400, 404), on top of COMMON_ERROR_CODES
    token_refused = "The access token is invalid."
    api_version: str | None = None        # the one api-version accepted; None: any, but one is required
    api_version_refused = "The api-version query parameter is required."

    def __init__(self, token: str):
        self.token = token

    def error_body(self, status: int, message: str) -> Any:
        code = {**COMMON_ERROR_CODES, **self.error_codes}.get(status, "Error")
        return {"error": {"code": code, "message": message}}

    def authorize(self, request: Request) -> Response | None:
        if request.header("Authorization") != f"Bearer {self.token}":
            return self._error(401, self.token_refused)
        version = request.query.get("api-version")
        if not version or (self.api_version is not None and version != self.api_version):
            return self._error(400, self.api_version_refused)
        return None
