"""Killed with SIGKILL mid-run and restarted, the host resumes the run; committed steps do not run again."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from itest_pipelines import publish, run_count, step, write_pipeline

from devhost.testing import start_host
from shared.client import PipelineClient

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]


def wait_for_step_status(client, run_id, step_name, status, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        steps = {item["Name"]: item for item in client.get_run(run_id)["Steps"]}
        if steps[step_name]["Status"] == status:
            return
        time.sleep(0.1)
    raise AssertionError(f"{step_name} never became {status}")


def test_sigkill_mid_run_then_restart_finishes_without_rerunning_committed_steps(azurite, tmp_path):
    suffix = os.urandom(4).hex()
    env = {"AzureWebJobsStorage": azurite.connection_string, "MLPIPE_BLOBSTORE_CONTAINER": f"ws{suffix}",
           "MLPIPE_SYSTEM_CONTAINER": f"sys{suffix}", "MLPIPE_DATA_DIR": str(tmp_path / "data"),
           "MLPIPE_FUNCTION_KEY": "resume-test-key"}
    marker = tmp_path / "marker"
    definition = {
        "name": "resume",
        "parameters": {"marker_dir": str(marker), "sleep_slow": 3.0},
        "steps": [step("first", outputs=["out"]),
                  step("slow", inputs={"x": "first.out"}, outputs=["out"], sleep_param=True),
                  step("last", inputs={"x": "slow.out"}, outputs=["out"])],
    }
    path = write_pipeline(tmp_path / "p", definition)

    with start_host(REPO_ROOT, env=env, data_dir=tmp_path / "data") as host:
        client = PipelineClient(host.url, "resume-test-key")
        pipeline = publish(client, path)
        run_id = client.submit(pipeline["Id"], "resume")["Id"]
        wait_for_step_status(client, run_id, "slow", "Running")
        host.kill()

    with start_host(REPO_ROOT, env=env, data_dir=tmp_path / "data") as host:
        client = PipelineClient(host.url, "resume-test-key")
        run = client.wait_for_run(run_id, poll_seconds=0.2, timeout=120)

    assert run["Status"] == "Finished", run
    assert all(item["Status"] == "Completed" for item in run["Steps"])
    assert run_count(marker, "first") == 1
    assert run_count(marker, "last") == 1
    assert run_count(marker, "slow") in (1, 2)  # interrupted once at most, then run to completion
