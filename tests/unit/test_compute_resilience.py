"""Retry policy (backoff, jitter, Retry-After), credential resolution and secret redaction for remote compute."""

from __future__ import annotations

import pytest

from shared.compute.retry import RetryPolicy, Transient, classify_status, parse_retry_after, retry_call
from shared.credentials import StaticTokenCredential, azure_credential, forget_credentials, is_secret_key, read_secret
from shared.errors import ComputeError, TransientError
from shared.redact import redact


class Flaky:
    def __init__(self, failures: list[BaseException], result="ok"):
        self.failures = list(failures)
        self.calls = 0
        self.result = result

    def __call__(self):
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return self.result


class Status(Exception):
    def __init__(self, status, retry_after=None):
        super().__init__(f"HTTP {status}")
        self.status, self.retry_after = status, retry_after


def classify(error):
    return classify_status(error.status, error.retry_after) if isinstance(error, Status) else None


def policy(**options):
    slept: list[float] = []
    return RetryPolicy(sleep=slept.append, **options), slept


def test_transient_errors_are_retried_with_growing_jittered_delays():
    retry, slept = policy(attempts=5, base_seconds=1, max_seconds=30)
    fn = Flaky([Status(503), Status(500), Status(502), ConnectionResetError()])
    with pytest.raises(ConnectionResetError):  # not classified transient by this classifier
        retry_call(fn, classify, "thing", retry)
    assert fn.calls == 4
    assert len(slept) == 3
    for attempt, delay in enumerate(slept, start=1):
        assert 0.5 * 2 ** (attempt - 1) <= delay <= 2 ** (attempt - 1)


def test_retry_after_is_honoured():
    retry, slept = policy(attempts=3, base_seconds=0.01)
    assert retry_call(Flaky([Status(429, "7")]), classify, "thing", retry) == "ok"
    assert 7 <= slept[0] <= 7.2


def test_permanent_errors_are_not_retried_and_attempts_run_out():
    retry, slept = policy(attempts=3, base_seconds=0.01)
    fn = Flaky([Status(400)])
    with pytest.raises(Status):
        retry_call(fn, classify, "thing", retry)
    assert fn.calls == 1 and slept == []
    fn = Flaky([Status(503)] * 5)
    with pytest.raises(TransientError, match="thing: still failing after 3 attempts"):
        retry_call(fn, classify, "thing", retry)
    assert fn.calls == 3


def test_classification_and_retry_after_forms():
    assert classify_status(404) is None and classify_status(409) is None
    assert classify_status(408) == Transient("HTTP 408")
    assert classify_status(503, "2").retry_after == 2
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past: no wait
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_delay_is_capped():
    retry = RetryPolicy(base_seconds=10, max_seconds=15)
    assert all(retry.delay(n, None) <= 15 for n in range(1, 10))
    assert retry.delay(1, 10_000) <= 121  # a huge Retry-After is bounded


def test_secret_settings_are_read_registered_and_redacted(monkeypatch):
    monkeypatch.setenv("TEAM_DBX", "plain-value-1234567")  # a name no redaction pattern knows
    assert read_secret("TEAM_DBX", "dbx") == "plain-value-1234567"
    assert redact("token plain-value-1234567 leaked") == "token *** leaked"
    monkeypatch.delenv("TEAM_DBX")
    with pytest.raises(ComputeError, match="compute 'dbx': app setting 'TEAM_DBX'"):
        read_secret("TEAM_DBX", "dbx")


def test_credential_resolution(monkeypatch):
    forget_credentials()
    monkeypatch.setenv("AML_BEARER", "bearer-abcdefgh")
    token = azure_credential({"token_setting": "AML_BEARER"}, "cpu").get_token("https://management.azure.com/.default")
    assert token.token == "bearer-abcdefgh" and token.expires_on > 0
    assert "bearer-abcdefgh" not in repr(StaticTokenCredential("bearer-abcdefgh"))
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

    assert isinstance(azure_credential({}, "cpu"), DefaultAzureCredential)
    assert azure_credential({}, "cpu") is azure_credential({"credential": "default"}, "other")  # cached
    assert isinstance(azure_credential({"managed_identity_client_id": "00000000-0000-0000-0000-000000000001"}, "c"),
                      ManagedIdentityCredential)
    with pytest.raises(ComputeError, match="needs tenant_id and client_id"):
        azure_credential({"client_secret_setting": "X"}, "cpu")
    with pytest.raises(ComputeError, match="credential must be"):
        azure_credential({"credential": "magic"}, "cpu")
    forget_credentials()


@pytest.mark.parametrize("key, secret", [("token", True), ("client_secret", True), ("account_key", True),
                                         ("sas_token", True), ("token_setting", False), ("client_id", False),
                                         ("node_type", False), ("host", False)])
def test_secret_key_names(key, secret):
    assert is_secret_key(key) is secret
