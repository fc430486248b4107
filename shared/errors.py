"""The project's own exceptions. Every boundary maps vendor errors to these.

Each error carries an API error code and the HTTP status it maps to, so triggers can turn
any of them into `{"error": {"code", "message"}}` in one place.
"""

from __future__ import annotations


class MlpipeError(Exception):
    """Base of every error mlpipe raises on purpose."""

    code = "InternalError"
    status = 500

    def __init__(self, message: str, *, code: str | None = None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code

    def to_body(self) -> dict:
        return {"error": {"code": self.code, "message": self.message}}


class InvalidRequest(MlpipeError):
    """Bad input from a user: a definition, a package, a submit body, a CLI argument."""

    code = "InvalidRequest"
    status = 400


class Unauthorized(MlpipeError):
    code = "Unauthorized"
    status = 401


class NotFound(MlpipeError):
    code = "NotFound"
    status = 404


class Conflict(MlpipeError):
    code = "Conflict"
    status = 409


class PayloadTooLarge(MlpipeError):
    code = "PayloadTooLarge"
    status = 413


class UnsupportedMediaType(MlpipeError):
    code = "UnsupportedMediaType"
    status = 415


class StorageError(MlpipeError):
    """Storage failed for a reason that is not the caller's fault (retryable or not)."""

    code = "StorageError"
    status = 503


class TransientError(MlpipeError):
    """An infrastructure failure worth retrying (429, 5xx, timeouts, connection resets)."""

    code = "TransientError"
    status = 503


class ComputeError(MlpipeError):
    """A compute backend refused or lost a job."""

    code = "ComputeError"
    status = 502


class StepFailed(MlpipeError):
    """The user's step ran and failed (non-zero exit, failed remote job)."""

    code = "StepFailed"
    status = 500


def validation_message(error) -> str:
    """A pydantic ValidationError as one line per problem: `field.path: what is wrong`."""
    parts = []
    for item in error.errors():
        where = ".".join(str(part) for part in item.get("loc", ())) or "body"
        parts.append(f"{where}: {item.get('msg')}")
    return "; ".join(parts)
