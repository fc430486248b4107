"""Every orchestration pattern end to end: HTTP starter -> durable client -> engine -> SDK replay."""

import json
import time
import uuid

import requests


def test_sequence(api):
    status = api.run("sequence", ["Tokyo", "Seattle"])
    assert status["runtimeStatus"] == "Completed"
    assert status["output"] == ["Hello Tokyo", "Hello Seattle"]
    assert json.loads(status["input"]) == ["Tokyo", "Seattle"]  # input is JSON text, as the extension reports


def test_check_status_response_shape(host, api):
    r = api.start("sequence", ["a"])
    assert r.status_code == 202
    body = r.json()
    assert r.headers["Location"] == body["statusQueryGetUri"]
    assert body["statusQueryGetUri"].startswith(f"{host.url}/runtime/webhooks/durabletask/instances/{body['id']}")
    api.wait(body["id"])
    direct = requests.get(body["statusQueryGetUri"], timeout=10)
    assert direct.status_code == 200 and direct.json()["runtimeStatus"] == "Completed"


def test_fan_out_fan_in(api, sample_out):
    name = f"fan-{uuid.uuid4().hex}.txt"
    status = api.run("fan_out", {"n": 25, "file": name})
    assert status["runtimeStatus"] == "Completed" and status["output"] == 25
    lines = (sample_out / name).read_text().split()
    assert sorted(map(int, lines)) == list(range(25))


def test_task_any_loop_with_timers_and_custom_status(api):
    status = api.run("any_loop", {"a": 2, "b": 0, "c": 3})
    assert status["runtimeStatus"] == "Completed"
    assert status["output"] == ["a", "b", "c"]
    assert status["customStatus"] == {"finished": ["a", "b"]}


def test_durable_timer(api):
    status = api.run("timer_orch")
    assert status["runtimeStatus"] == "Completed"
    assert 1.0 <= status["output"] < 3.0


def test_retry_succeeds_after_failures(api):
    key = uuid.uuid4().hex
    status = api.run("retry_orch", {"key": key, "succeed_on": 3})
    assert status["output"] == {"ok": "succeeded on attempt 3"}


def test_retry_gives_up(api, sample_out):
    key = uuid.uuid4().hex
    status = api.run("retry_orch", {"key": key, "succeed_on": 99})
    assert "attempt 3 failed" in status["output"]["failed"]
    assert (sample_out / f"flaky-{key}.txt").read_text() == "3"


def test_sub_orchestrations(api):
    status = api.run("parent_orch")
    assert status["output"] == {"child": ["Hello x", "Hello y"], "failed_child": True}


def test_sub_orchestration_with_retry(api):
    status = api.run("sub_retry", {"key": uuid.uuid4().hex, "succeed_on": 2})
    assert status["runtimeStatus"] == "Completed" and status["output"] == "succeeded on attempt 2"


def test_external_event(api):
    instance = f"evt-{uuid.uuid4().hex}"
    assert api.start("wait_event", instance_id=instance).status_code == 202
    r = api.session.post(f"{api.host.url}/api/raise/{instance}/approve", json={"by": "alice"}, timeout=10)
    assert r.status_code == 202
    status = api.wait(instance)
    # Like the real extension, the Python SDK's double encoding delivers the event as JSON text
    assert json.loads(status["output"]["approved"]) == {"by": "alice"}


def test_failing_activity_fails_the_orchestration(api):
    status = api.run("failing")
    assert status["runtimeStatus"] == "Failed"
    assert status["output"].startswith("Orchestrator function 'failing' failed: Activity function 'fail_activity' "
                                       "failed: ValueError: boom")


def test_caught_activity_failure(api):
    status = api.run("catching")
    assert status["runtimeStatus"] == "Completed"
    assert "ValueError: caught" in status["output"]["caught"]


def test_continue_as_new(api):
    status = api.run("counter", 0)
    assert status["runtimeStatus"] == "Completed" and status["output"] == 3
    assert status["input"] == "3"


def test_terminate(api):
    instance = f"term-{uuid.uuid4().hex}"
    api.start("wait_event", instance_id=instance)
    r = api.session.post(f"{api.host.url}/api/terminate/{instance}", params={"reason": "enough"}, timeout=10)
    assert r.status_code == 202
    status = api.wait(instance)
    assert status["runtimeStatus"] == "Terminated" and status["output"] == "enough"
    # terminating a finished instance is a no-op (410 Gone is accepted by the SDK)
    assert api.session.post(f"{api.host.url}/api/terminate/{instance}", timeout=10).status_code == 202


def test_duplicate_start_of_running_instance(api):
    instance = f"dup-{uuid.uuid4().hex}"
    assert api.start("wait_event", instance_id=instance).status_code == 202
    second = api.start("wait_event", instance_id=instance)
    assert second.status_code == 500  # the SDK raises: 409 "already exists" from the extension API
    listed = api.session.get(f"{api.host.url}/api/instances", params={"status": "Running,Pending"}, timeout=10).json()
    assert [i["id"] for i in listed].count(instance) == 1
    api.session.post(f"{api.host.url}/api/raise/{instance}/approve", json=1, timeout=10)
    assert api.wait(instance)["runtimeStatus"] == "Completed"
    # once finished, the same id may be started again
    assert api.start("sequence", ["again"], instance_id=instance).status_code == 202
    assert api.wait(instance)["output"] == ["Hello again"]


def test_unknown_orchestrator(api):
    r = api.start("no_such_orchestrator")
    assert r.status_code == 500


def test_status_of_unknown_instance_and_history(api):
    assert api.status("does-not-exist") == {"found": False}
    r = api.start("sequence", ["h"])
    status = api.wait(r.json()["id"], history=True)
    kinds = [e["EventType"] for e in status["history"]]
    assert kinds == ["ExecutionStarted", "TaskScheduled", "TaskCompleted", "ExecutionCompleted"]


def test_purge(api):
    r = api.start("sequence", ["p"])
    instance = r.json()["id"]
    api.wait(instance)
    assert api.session.delete(f"{api.host.url}/api/purge/{instance}", timeout=10).json() == {"deleted": 1}
    assert api.status(instance) == {"found": False}


def test_suspend_and_resume(api):
    instance = f"susp-{uuid.uuid4().hex}"
    api.start("wait_event", instance_id=instance)
    base = api.host.url
    assert api.session.post(f"{base}/api/suspend/{instance}", timeout=10).status_code == 202
    deadline = time.monotonic() + 10
    while api.status(instance)["runtimeStatus"] != "Suspended":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    api.session.post(f"{base}/api/raise/{instance}/approve", json="while-suspended", timeout=10)
    time.sleep(0.3)
    assert api.status(instance)["runtimeStatus"] == "Suspended"  # the event waits for the resume
    assert api.session.post(f"{base}/api/resume/{instance}", timeout=10).status_code == 202
    status = api.wait(instance)
    assert status["output"] == {"approved": '"while-suspended"'}


def test_many_concurrent_instances(api):
    ids = [api.start("sequence", [str(i)]).json()["id"] for i in range(20)]
    outputs = [api.wait(i)["output"] for i in ids]
    assert outputs == [[f"Hello {i}"] for i in range(20)]


def test_activity_names_and_raw_name_alias(api):
    assert api.run("alias_orch")["output"] == ["Hi object", "Hi name"]


def test_webhook_start_and_wait(host):
    """The public createAndWaitOnNewInstancePostUri shape: start, wait up to `timeout`, answer the output."""
    r = requests.post(f"{host.url}/runtime/webhooks/durabletask/orchestrators/sequence",
                      params={"timeout": "10", "pollingInterval": "0.05", "code": host.key}, json=["w"], timeout=20)
    assert r.status_code == 200 and r.json() == ["Hello w"]


def test_query_by_prefix_and_time(host, api):
    prefix = f"q-{uuid.uuid4().hex[:8]}-"
    for i in range(3):
        api.run("sequence", [str(i)], instance_id=f"{prefix}{i}")
    base = f"{host.url}/runtime/webhooks/durabletask/instances/"
    r = requests.get(base, params={"instanceIdPrefix": prefix, "runtimeStatus": "Completed", "code": host.key},
                     timeout=10)
    assert sorted(i["instanceId"] for i in r.json()) == [f"{prefix}{i}" for i in range(3)]
    r = requests.get(base, params={"instanceIdPrefix": prefix, "createdTimeFrom": "2999-01-01T00:00:00.000000Z",
                                   "code": host.key}, timeout=10)
    assert r.json() == []
    r = requests.get(base, params={"instanceIdPrefix": prefix, "top": "2", "code": host.key}, timeout=10)
    assert len(r.json()) == 2 and r.headers["x-ms-continuation-token"]
