"""HTTP triggers through the real host: keys, anonymous routes, route constraints, size limit, errors."""

import requests


def test_function_route_requires_key(host):
    r = requests.post(f"{host.url}/api/echo", data=b"x", timeout=10)
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "Unauthorized"


def test_wrong_key_is_rejected(host):
    r = requests.post(f"{host.url}/api/echo", data=b"x", headers={"x-functions-key": "nope"}, timeout=10)
    assert r.status_code == 401
    r = requests.post(f"{host.url}/api/echo", params={"code": host.key + "x"}, data=b"x", timeout=10)
    assert r.status_code == 401


def test_key_in_header_or_query(host):
    r = requests.post(f"{host.url}/api/echo", data=b"abc", headers=host.headers, timeout=10)
    assert r.status_code == 200 and r.json()["bytes"] == 3
    r = requests.post(f"{host.url}/api/echo", params={"code": host.key, "a": "1"}, data=b"abcd", timeout=10)
    assert r.status_code == 200 and r.json() == {"bytes": 4, "params": {"code": host.key, "a": "1"}}


def test_anonymous_route_needs_no_key(host):
    r = requests.get(f"{host.url}/api/anon", timeout=10)
    assert r.status_code == 200 and r.text == "anonymous ok"
    assert r.headers["Content-Type"].startswith("text/plain")


def test_route_constraint_and_unknown_routes(host):
    assert requests.get(f"{host.url}/api/items/42", headers=host.headers, timeout=10).json() == {"item": 42}
    r = requests.get(f"{host.url}/api/items/abc", headers=host.headers, timeout=10)
    assert r.status_code == 404 and r.json()["error"]["code"] == "NotFound"
    assert requests.get(f"{host.url}/nope", timeout=10).status_code == 404
    r = requests.delete(f"{host.url}/api/anon", timeout=10)
    assert r.status_code == 405


def test_request_body_limit(host, max_request_bytes):
    r = requests.post(f"{host.url}/api/echo", data=b"x" * (max_request_bytes + 1), headers=host.headers, timeout=10)
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "PayloadTooLarge"
    ok = requests.post(f"{host.url}/api/echo", data=b"x" * max_request_bytes, headers=host.headers, timeout=10)
    assert ok.status_code == 200 and ok.json()["bytes"] == max_request_bytes


def test_chunked_body_over_limit(host, max_request_bytes):
    def chunks():
        for _ in range(max_request_bytes // 1024 + 2):
            yield b"y" * 1024
    r = requests.post(f"{host.url}/api/echo", data=chunks(), headers=host.headers, timeout=10)
    assert r.status_code == 413


def test_unhandled_exception_is_a_generic_500(host):
    r = requests.get(f"{host.url}/api/boom", headers=host.headers, timeout=10)
    assert r.status_code == 500
    body = r.json()
    assert body["error"]["code"] == "InternalError"
    assert "secret internals" not in r.text
    assert "secret internals" in host.output()  # logged for the developer


def test_durable_webhooks_need_a_key(host, api):
    r = api.start("sequence", ["k"])
    status_url = r.json()["statusQueryGetUri"]
    assert "code=" in status_url
    assert requests.get(status_url.split("?")[0], timeout=10).status_code == 401
    assert requests.get(status_url, timeout=10).status_code in (200, 202)


def test_key_never_logged(host, api):
    api.run("sequence", ["log-check"])
    requests.get(f"{host.url}/api/boom", params={"code": host.key}, timeout=10)
    assert host.key not in host.output()


def test_durable_webhook_errors_are_json(host, max_request_bytes):
    base = f"{host.url}/runtime/webhooks/durabletask"
    r = requests.post(f"{base}/orchestrators/sequence", data=b'"' + b"x" * max_request_bytes + b'"',
                      headers=host.headers, timeout=10)
    assert r.status_code == 413 and r.json()["error"]["code"] == "PayloadTooLarge"
    r = requests.get(f"{base}/nothing-here", headers=host.headers, timeout=10)
    assert r.status_code == 404 and r.json()
    r = requests.post(f"{base}/orchestrators/no_such_thing", headers=host.headers, timeout=10)
    assert r.status_code == 400 and "doesn't exist" in r.json()["ExceptionMessage"]
