import logging

from devhost.redaction import RedactingFilter, Redactor


def test_redactor_hides_secrets_codes_and_userinfo():
    r = Redactor()
    r.add("s3cret-key")
    text = r("key s3cret-key in http://h/api/x?a=1&code=abc123&b=2 and http://rpc:pw@127.0.0.1:1/runtime/")
    assert "s3cret-key" not in text and "abc123" not in text and "pw@" not in text
    assert "code=***" in text and "http://***@127.0.0.1:1/runtime/" in text


def test_filter_redacts_messages_and_tracebacks():
    from devhost.redaction import REDACT
    REDACT.add("tb-secret-value")
    try:
        raise ValueError("failed with tb-secret-value")
    except ValueError:
        import sys
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "url %s", ("http://h/?code=zzz",), sys.exc_info())
    assert RedactingFilter().filter(record)
    assert record.getMessage() == "url http://h/?code=***"
    assert "tb-secret-value" not in record.exc_text
