"""Concurrent control-plane calls on the same objects leave consistent records (threads, real host)."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import pytest
from itest_pipelines import publish, step, write_pipeline

from shared.client import ApiError

pytestmark = pytest.mark.integration

THREADS = 8


def _outcome(call):
    try:
        return "ok", call()
    except ApiError as error:
        return error.code, error


@pytest.fixture
def pipeline(client, tmp_path):
    definition = {"name": "busy", "parameters": {"marker_dir": str(tmp_path / "m")}, "steps": [step("only")]}
    return publish(client, write_pipeline(tmp_path / "p", definition))


def test_concurrent_submit_disable_enable_on_one_pipeline(client, pipeline):
    pid = pipeline["Id"]
    calls = []
    for index in range(24):
        if index % 4 == 1:
            calls.append(("disable", lambda: client.set_pipeline_enabled(pid, False)))
        elif index % 4 == 3:
            calls.append(("enable", lambda: client.set_pipeline_enabled(pid, True)))
        else:
            calls.append(("submit", lambda i=index: client.submit(pid, "race", Tags={"i": str(i)})))
    with ThreadPoolExecutor(THREADS) as pool:
        results = list(pool.map(lambda item: (item[0], *_outcome(item[1])), calls))

    accepted = [value for kind, code, value in results if kind == "submit" and code == "ok"]
    refused = [code for kind, code, _ in results if kind == "submit" and code != "ok"]
    assert set(refused) <= {"PipelineDisabled"}, refused
    assert all(code == "ok" for kind, code, _ in results if kind != "submit")
    # every accepted submit is exactly one run of this pipeline; refused ones started nothing
    runs = client.list_runs(pipelineId=pid, top=100)
    assert sorted(run["Id"] for run in runs) == sorted(run["Id"] for run in accepted)
    assert len({run["Tags"]["i"] for run in runs}) == len(runs)
    # the record and the list index agree on the final status
    final = client.get_pipeline(pid)["Status"]
    other = "Disabled" if final == "Active" else "Active"
    assert pid in [item["Id"] for item in client.list_pipelines(final)]
    assert pid not in [item["Id"] for item in client.list_pipelines(other)]
    for run in accepted:
        assert client.wait_for_run(run["Id"], poll_seconds=0.2, timeout=180)["Status"] == "Finished"


def test_concurrent_publish_of_the_same_file_gives_distinct_pipelines(client, tmp_path):
    path = write_pipeline(tmp_path / "p", {"name": "twin", "parameters": {"marker_dir": str(tmp_path / "m")},
                                           "steps": [step("only")]})
    with ThreadPoolExecutor(THREADS) as pool:
        published = list(pool.map(lambda _i: publish(client, path), range(THREADS)))
    ids = {item["Id"] for item in published}
    assert len(ids) == THREADS
    listed = {item["Id"] for item in client.list_pipelines("All")}
    assert ids <= listed


def test_concurrent_endpoint_create_add_version_set_default_disable(client, pipeline):
    name = f"race-{os.urandom(3).hex()}"
    with ThreadPoolExecutor(THREADS) as pool:
        creates = list(pool.map(lambda _i: _outcome(lambda: client.create_endpoint(name, pipeline["Id"])),
                                range(THREADS)))
    assert sorted(code for code, _ in creates) == ["EndpointExists"] * (THREADS - 1) + ["ok"]

    with ThreadPoolExecutor(THREADS) as pool:
        added = list(pool.map(lambda _i: _outcome(lambda: client.add_endpoint_version(name, pipeline["Id"])),
                              range(THREADS)))
    assert all(code == "ok" for code, _ in added)
    endpoint = client.get_endpoint(name)
    assert [v["Version"] for v in endpoint["Versions"]] == [str(i) for i in range(THREADS + 1)]  # none lost

    # a disable and a set-default racing each other: both changes survive
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda call: _outcome(call), [lambda: client.set_endpoint_enabled(name, False),
                                                              lambda: client.set_endpoint_default(name, "3")]))
    assert all(code == "ok" for code, _ in results)
    endpoint = client.get_endpoint(name)
    assert endpoint["Status"] == "Disabled" and endpoint["DefaultVersion"] == "3"
    assert name in [item["Name"] for item in client.list_endpoints("Disabled")]


def test_concurrent_endpoint_submit_and_disable(client, pipeline):
    name = f"subrace-{os.urandom(3).hex()}"
    client.create_endpoint(name, pipeline["Id"])
    calls = [lambda: client.submit_endpoint(name, "race") for _ in range(10)]
    calls.insert(4, lambda: client.set_endpoint_enabled(name, False))
    with ThreadPoolExecutor(THREADS) as pool:
        results = list(pool.map(_outcome, calls))
    accepted = [value for code, value in results if code == "ok" and value.get("EndpointName")]
    assert {code for code, _ in results} <= {"ok", "EndpointDisabled"}
    runs = client.list_runs(endpointName=name)
    assert sorted(run["Id"] for run in runs) == sorted(run["Id"] for run in accepted)
    assert client.get_endpoint(name)["Status"] == "Disabled"


def test_concurrent_tag_updates_on_one_run(client, pipeline):
    run = client.submit(pipeline["Id"], "tags-race", Tags={"base": "1"})
    with ThreadPoolExecutor(THREADS) as pool:
        results = list(pool.map(lambda i: _outcome(lambda: client.update_run_tags(run["Id"], {f"k{i}": str(i)})),
                                range(THREADS * 2)))
    assert all(code == "ok" for code, _ in results)
    final = client.wait_for_run(run["Id"], poll_seconds=0.2, timeout=120)
    assert final["Tags"] == {"base": "1", **{f"k{i}": str(i) for i in range(THREADS * 2)}}
    assert final["Status"] == "Finished"  # the orchestrator's own updates were not lost either
    for i in (0, THREADS * 2 - 1):
        assert [item["Id"] for item in client.list_runs(tag=f"k{i}:{i}")] == [run["Id"]]
