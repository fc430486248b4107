"""The `mlpipe` CLI against a real host: --output json for scripts, tables for people, exit codes."""

from __future__ import annotations

import json
import os

import pytest
from itest_pipelines import step, write_pipeline

from shared import cli

pytestmark = pytest.mark.integration


@pytest.fixture
def mlpipe(host, capsys, test_storage):
    """Run the CLI in this process; (exit code, stdout, stderr)."""

    def run(*argv: str, key: str | None = None):
        capsys.readouterr()
        code = cli.main([*argv, "--host", host.url, "--key", key or host.key])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def _json(out: str):
    return json.loads(out)


@pytest.fixture
def pipeline_file(tmp_path):
    definition = {"name": "cli", "parameters": {"marker_dir": str(tmp_path / "m"), "fail_only": "False"},
                  "steps": [step("only", outputs=["out"], fail_param=True)]}
    return write_pipeline(tmp_path / "p", definition)


def test_publish_endpoint_submit_wait_and_show(mlpipe, pipeline_file):
    code, out, _ = mlpipe("publish", str(pipeline_file), "--version", "1.0", "--output", "json")
    assert code == 0
    pipeline = _json(out)
    assert pipeline["Version"] == "1.0"
    name = f"cli-{os.urandom(3).hex()}"
    code, out, _ = mlpipe("endpoints", "create", name, "--pipeline", pipeline["Id"], "--output", "json")
    assert code == 0 and _json(out)["DefaultVersion"] == "0"
    code, out, _ = mlpipe("endpoints", "add-version", name, "--pipeline", pipeline["Id"], "--output", "json")
    assert code == 0 and [v["Version"] for v in _json(out)["Versions"]] == ["0", "1"]
    assert mlpipe("endpoints", "set-default", name, "1")[0] == 0
    code, out, _ = mlpipe("endpoints", "show", name)
    assert code == 0 and name in out and pipeline["Id"] in out  # a table for people
    code, out, _ = mlpipe("endpoints", "list", "--output", "json")
    assert name in [item["Name"] for item in _json(out)]

    code, out, _ = mlpipe("submit", "--endpoint", name, "--version", "0", "--experiment", "cli", "--tag", "who=cli",
                          "--wait", "--output", "json")
    assert code == 0
    run = _json(out)
    assert run["Status"] == "Finished" and run["EndpointName"] == name and run["PipelineVersion"] == "0"
    assert run["Tags"] == {"who": "cli"} and run["RunSource"] == "CLI"

    code, out, _ = mlpipe("runs", "list", "--endpoint", name, "--tag", "who:cli", "--output", "json")
    assert code == 0 and [item["Id"] for item in _json(out)] == [run["Id"]]
    code, out, _ = mlpipe("runs", "show", run["Id"])
    assert code == 0 and run["Id"] in out and "only" in out and "Completed" in out
    code, out, _ = mlpipe("runs", "tag", run["Id"], "reviewed=yes", "--remove", "who", "--output", "json")
    assert code == 0 and _json(out)["Tags"] == {"reviewed": "yes"}
    code, out, _ = mlpipe("runs", "logs", run["Id"], "only")
    assert code == 0 and "step only done" in out
    code, out, _ = mlpipe("pipelines", "list", "--status", "All")
    assert code == 0 and pipeline["Id"][:8] in out


def test_exit_codes(mlpipe, pipeline_file, host):
    code, out, _ = mlpipe("publish", str(pipeline_file), "--output", "json")
    pipeline_id = _json(out)["Id"]
    # 1: the followed run failed
    code, out, _ = mlpipe("submit", "--pipeline", pipeline_id, "--experiment", "cli", "--param", "fail_only=True",
                          "--wait", "--output", "json")
    assert code == 1 and _json(out)["Status"] == "Failed"
    # 2: bad input, named
    code, _, err = mlpipe("submit", "--pipeline", pipeline_id, "--experiment", "cli", "--param", "nope=1")
    assert code == 2 and "nope" in err
    assert mlpipe("submit", "--pipeline", pipeline_id, "--endpoint", "x", "--experiment", "cli")[0] == 2
    assert mlpipe("runs", "tag", "mlpipe_x", "no-equals-sign")[0] == 2
    # 4: not found
    code, _, err = mlpipe("runs", "show", "mlpipe_does_not_exist")
    assert code == 4 and "NotFound" in err
    # 5: conflict (disabled)
    assert mlpipe("pipelines", "disable", pipeline_id)[0] == 0
    code, _, err = mlpipe("submit", "--pipeline", pipeline_id, "--experiment", "cli")
    assert code == 5 and "PipelineDisabled" in err
    # 6: wrong key (and the key is not echoed)
    code, _, err = mlpipe("pipelines", "list", key="not-the-key-123")
    assert code == 6 and "not-the-key-123" not in err
    # 3: no host
    code = cli.main(["runs", "list", "--host", "http://127.0.0.1:9", "--key", "k"])
    assert code == 3


def test_run_publishes_privately_and_follows(mlpipe, pipeline_file, client):
    code, out, _ = mlpipe("run", str(pipeline_file), "--experiment", "cli-run", "--tag", "via=run")
    assert code == 0 and "Finished" in out and "only.out:" in out  # line progress when not on a terminal
    run = client.list_runs(experiment="cli-run", top=1)[0]
    assert run["Status"] == "Finished" and run["Tags"] == {"via": "run"} and run["RunSource"] == "CLI"
    assert run["PipelineId"] not in [item["Id"] for item in client.list_pipelines("All")]  # private
