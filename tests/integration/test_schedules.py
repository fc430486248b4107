"""Schedules (API.md §3/§4) on devhost + Azurite: CRUD, the timer firing due schedules exactly once
(also with two hosts on one storage account), endpoint targets, and one catch-up run after downtime."""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path

import pytest
from itest_pipelines import error_of
from itest_triggers import publish_quick_pipeline, runs_of

from devhost.testing import start_host
from shared.client import PipelineClient
from shared.submissions import deterministic_run_id

pytestmark = pytest.mark.integration
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def host_env(azurite, tmp_path_factory):
    suffix = os.urandom(4).hex()
    return {
        "AzureWebJobsStorage": azurite.connection_string,
        "MLPIPE_BLOBSTORE_CONTAINER": f"ws{suffix}",
        "MLPIPE_SYSTEM_CONTAINER": f"sys{suffix}",
        "MLPIPE_DATA_DIR": str(tmp_path_factory.mktemp("hostdata")),
        "MLPIPE_FUNCTION_KEY": "schedule-test-key",
        "MLPIPE_SCHEDULER_CRON": "* * * * * *",  # the scheduler looks every second
    }


@pytest.fixture
def client(host) -> PipelineClient:
    return PipelineClient(host.url, host.key)


@pytest.fixture(scope="module")
def pipeline(host, tmp_path_factory):
    return publish_quick_pipeline(PipelineClient(host.url, host.key), tmp_path_factory.mktemp("sched-pipeline"),
                                  extra_params={"label": "x"})


def unique(prefix: str) -> str:
    return f"{prefix}-{os.urandom(3).hex()}"


def api(client, method, path, body=None):
    return client.request(method, path, body=body)


def test_create_get_list_disable_enable_delete(client, pipeline):
    name = unique("crud")
    created = api(client, "POST", "/api/schedules", {
        "name": name, "pipelineId": pipeline["Id"], "experimentName": "nightly",
        "parameterAssignments": {"label": "y"},
        "recurrence": {"frequency": "Day", "interval": 1, "hours": [3], "minutes": [30], "timeZone": "Europe/Berlin"}})
    assert created["Name"] == name and created["Status"] == "Active" and created["Kind"] == "Recurrence"
    assert created["LastRunId"] is None
    next_run = dt.datetime.fromisoformat(created["NextRunTimeUtc"].replace("Z", "+00:00"))
    assert next_run.astimezone(dt.timezone(dt.timedelta(hours=0))).minute == 30
    assert api(client, "GET", f"/api/schedules/{name}")["Recurrence"]["hours"] == [3]
    assert name in [s["Name"] for s in api(client, "GET", "/api/schedules")["value"]]
    assert api(client, "POST", f"/api/schedules/{name}/disable")["Status"] == "Disabled"
    assert api(client, "GET", f"/api/schedules/{name}")["NextRunTimeUtc"] is None
    assert api(client, "POST", f"/api/schedules/{name}/enable")["Status"] == "Active"
    assert error_of(lambda: api(client, "POST", "/api/schedules", {
        "name": name, "pipelineId": pipeline["Id"], "experimentName": "x", "cron": "0 0 * * * *"})).status == 409
    api(client, "DELETE", f"/api/schedules/{name}")
    assert error_of(lambda: api(client, "GET", f"/api/schedules/{name}")).status == 404


@pytest.mark.parametrize("change, status, words", [
    ({"cron": "0 0 * * *"}, 400, "six"),
    ({"cron": "0 0 * * * *", "recurrence": {"frequency": "Day", "interval": 1}}, 400, "exactly one"),
    ({"recurrence": {"frequency": "Fortnight", "interval": 1}}, 400, "frequency"),
    ({"recurrence": {"frequency": "Hour", "interval": 1, "hours": [1]}}, 400, "hours"),
    ({"recurrence": {"frequency": "Day", "interval": 1, "timeZone": "Mars/Olympus"}}, 400, "time zone"),
    ({"pipelineId": "nope", "cron": "0 0 * * * *"}, 404, "nope"),
    ({"cron": "0 0 * * * *", "parameterAssignments": {"missing": 1}}, 400, "missing"),
    ({"datastore": {"pathOnDatastore": "../up"}}, 400, "pathOnDatastore"),
    ({"datastore": {"pathOnDatastore": "in", "dataPathParameterName": "nope"}}, 400, "nope"),
])
def test_bad_schedules_are_rejected_naming_the_field(client, pipeline, change, status, words):
    body = {"name": unique("bad"), "pipelineId": pipeline["Id"], "experimentName": "x", **change}
    error = error_of(lambda: api(client, "POST", "/api/schedules", body))
    assert error.status == status
    assert words.lower() in error.api_message.lower()


def wait_runs(client, experiment, count, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = runs_of(client, experiment)
        if len(runs) >= count:
            return runs
        time.sleep(0.3)
    return runs_of(client, experiment)


def due_of(run_id: str) -> dt.datetime:
    return dt.datetime.strptime(run_id.split("_")[1], "%Y%m%d%H%M%S").replace(tzinfo=dt.timezone.utc)


def test_cron_schedule_fires_once_per_due_time(client, pipeline):
    name, experiment = unique("cron"), unique("exp")
    api(client, "POST", "/api/schedules", {"name": name, "pipelineId": pipeline["Id"], "experimentName": experiment,
                                           "cron": "*/3 * * * * *"})
    runs = wait_runs(client, experiment, 3, timeout=20)
    api(client, "POST", f"/api/schedules/{name}/disable")
    time.sleep(1.5)
    runs = runs_of(client, experiment)
    assert len(runs) >= 3
    dues = [due_of(run["Id"]) for run in runs]
    assert len(set(dues)) == len(dues)  # one run per due time
    for run, due in zip(runs, dues):
        assert due.second % 3 == 0
        assert run["Id"] == deterministic_run_id("sched", name, due)
        assert run["RunSource"] == "Schedule" and run["Tags"]["mlpipe.schedule"] == name
    shown = api(client, "GET", f"/api/schedules/{name}")
    assert shown["LastRunId"] in {run["Id"] for run in runs}
    count = len(runs)
    time.sleep(3.5)
    assert len(runs_of(client, experiment)) == count  # disabled: nothing more


def test_two_hosts_start_each_due_time_once(client, pipeline, host_env, tmp_path):
    name, experiment = unique("twohosts"), unique("exp")
    env = {**host_env, "MLPIPE_DATA_DIR": str(tmp_path / "second")}
    with start_host(REPO_ROOT, env=env, data_dir=tmp_path / "second"):
        api(client, "POST", "/api/schedules", {"name": name, "pipelineId": pipeline["Id"],
                                               "experimentName": experiment, "cron": "*/2 * * * * *"})
        time.sleep(9)
        api(client, "POST", f"/api/schedules/{name}/disable")
    time.sleep(1)
    runs = runs_of(client, experiment)
    dues = [due_of(run["Id"]) for run in runs]
    assert len(runs) >= 3 and len(set(dues)) == len(dues)


def test_endpoint_schedule_runs_the_default_version_at_fire_time(client, pipeline, tmp_path):
    other = publish_quick_pipeline(client, tmp_path / "other", name="quick-v2", extra_params={"label": "z"})
    endpoint = unique("ep")
    api(client, "POST", "/api/endpoints", {"name": endpoint, "pipelineId": pipeline["Id"]})
    api(client, "POST", f"/api/endpoints/{endpoint}/versions", {"pipelineId": other["Id"]})
    name, experiment = unique("epsched"), unique("exp")
    api(client, "POST", "/api/schedules", {"name": name, "endpointName": endpoint, "experimentName": experiment,
                                           "cron": "* * * * * *"})
    first = wait_runs(client, experiment, 1)[0]
    assert first["PipelineId"] == pipeline["Id"] and first["EndpointName"] == endpoint
    client.request("PUT", f"/api/endpoints/{endpoint}/default", body={"version": "1"})
    time.sleep(2.5)
    api(client, "POST", f"/api/schedules/{name}/disable")
    newest = runs_of(client, experiment)[0]
    assert newest["PipelineId"] == other["Id"]


def test_missed_due_times_start_one_catch_up_run(client, host_env, pipeline, monkeypatch):
    """Due times that passed while no host ran: one run for the latest, not one per missed slot."""
    from shared.schedules import ScheduleStore
    from shared.settings import reset_settings

    for key, value in host_env.items():
        monkeypatch.setenv(key, value)
    reset_settings()
    name, experiment = unique("catchup"), unique("exp")
    store = ScheduleStore()
    hour_ago = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)).isoformat()
    store.create({"name": name, "pipelineId": pipeline["Id"], "experimentName": experiment,
                  "recurrence": {"frequency": "Minute", "interval": 1, "startTime": hour_ago}, "description": "x"})

    def as_if_the_host_was_down_for_an_hour(record):
        record.CreatedTimeUtc = hour_ago
        record.LastDueTimeUtc = hour_ago
        return True

    store.modify(name, as_if_the_host_was_down_for_an_hour)  # ~60 due times are now past
    runs = wait_runs(client, experiment, 1, timeout=10)
    time.sleep(2.5)
    api(client, "POST", f"/api/schedules/{name}/disable")
    runs = runs_of(client, experiment)
    assert len(runs) == 1
    now = dt.datetime.now(dt.timezone.utc)
    assert now - due_of(runs[0]["Id"]) < dt.timedelta(seconds=65)  # the latest missed due time
    reset_settings()


def test_cli_schedules(host, pipeline):
    from shared import cli

    name = unique("cli")
    client = PipelineClient(host.url, host.key)
    common = ["--host", host.url, "--key", host.key]
    assert cli.main(["schedules", "create", name, "--pipeline", pipeline["Id"], "--experiment", "cli",
                     "--frequency", "Week", "--week-days", "Monday,Friday", "--hours", "6", "--minutes", "0",
                     "--param", "label=q", *common]) == 0
    created = client.get_schedule(name)
    assert created["Recurrence"] == {"frequency": "Week", "interval": 1, "weekDays": ["Monday", "Friday"],
                                     "hours": [6], "minutes": [0]}
    assert created["ParameterAssignments"] == {"label": "q"}
    assert cli.main(["schedules", "disable", name, *common]) == 0
    assert client.get_schedule(name)["Status"] == "Disabled"
    assert cli.main(["schedules", "list", *common]) == 0
    assert cli.main(["schedules", "create", unique("w"), "--pipeline", pipeline["Id"], "--experiment", "cli",
                     "--watch", "in/x", "--debounce", "5", *common]) == 0
    assert cli.main(["schedules", "delete", name, *common]) == 0
    assert cli.main(["schedules", "show", name, *common]) == 4  # not found
