"""A burst of submissions: every 202 is a run that exists, is listed, and finishes, even when the
host is killed right after the burst (while the new runs wait for it to end)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from itest_pipelines import publish, run_count, step, write_pipeline

from devhost.testing import start_host
from shared.client import PipelineClient

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
N = 40


def test_sigkill_right_after_a_burst_of_submissions_loses_no_accepted_run(host_env, tmp_path):
    env, data_dir = host_env, Path(host_env["MLPIPE_DATA_DIR"])  # this module starts its own hosts
    marker = tmp_path / "marker"
    path = write_pipeline(tmp_path / "p", {"name": "burst", "parameters": {"marker_dir": str(marker)},
                                            "steps": [step("only", outputs=["out"])]})

    with start_host(REPO_ROOT, env=env, data_dir=data_dir) as host:
        client = PipelineClient(host.url, env["MLPIPE_FUNCTION_KEY"])
        pipeline_id = publish(client, path)["Id"]
        client.wait_for_run(client.submit(pipeline_id, "first")["Id"], poll_seconds=0.1, timeout=60)
        with ThreadPoolExecutor(8) as pool:
            runs = list(pool.map(lambda _: client.submit(pipeline_id, "burst"), range(N)))
        host.kill()  # the new runs wait for the burst to end, their index entries too
        assert {run["Status"] for run in runs} == {"Queued"}

    with start_host(REPO_ROOT, env=env, data_dir=data_dir) as host:
        client = PipelineClient(host.url, env["MLPIPE_FUNCTION_KEY"])
        finished = [client.wait_for_run(run["Id"], poll_seconds=0.1, timeout=120) for run in runs]
        assert {run["Status"] for run in finished} == {"Finished"}
        listed = {run["Id"] for run in client.list_runs(experiment="burst", status="Finished", top=1000)}
        assert listed == {run["Id"] for run in runs}
    assert run_count(marker, "only") == 1  # every later run reused the first one's step
