"""The host process itself: generated key file, start failures, full-replay mode, the CLI entry."""

import stat
import uuid

import pytest
import requests

from devhost.testing import HostStartError, start_host


def test_generated_key_file_is_private_and_never_printed(private_host, tmp_path, azurite):
    host, api = private_host(tmp_path / "data", {"MLPIPE_FUNCTION_KEY": ""})
    key_file = tmp_path / "data" / "function-key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert host.key and host.key in key_file.read_text()
    assert str(key_file) in host.output()
    assert host.key not in host.output()
    assert requests.get(f"{host.url}/api/items/1", headers={"x-functions-key": host.key}, timeout=10).ok
    # the same key is reused on restart
    host.stop()
    again, _ = private_host(tmp_path / "data", {"MLPIPE_FUNCTION_KEY": ""})
    assert again.key == host.key


def test_start_failure_shows_the_host_output(tmp_path):
    (tmp_path / "function_app.py").write_text("raise RuntimeError('broken app on purpose')\n")
    with pytest.raises(HostStartError) as info:
        start_host(tmp_path, {"AzureWebJobsStorage": "DefaultEndpointsProtocol=http;AccountName=x;AccountKey=eA=="},
                   data_dir=tmp_path / "data", timeout=20)
    assert "broken app on purpose" in str(info.value)


def test_full_replay_mode_gives_the_same_results(private_host, tmp_path):
    """MLPIPE_DURABLE_FULL_REPLAY=1 replays the whole history through the SDK every episode."""
    host, api = private_host(tmp_path / "data", {"MLPIPE_DURABLE_FULL_REPLAY": "1"})
    assert api.run("any_loop", {"a": 2, "b": 1})["output"] == ["a", "b"]
    assert api.run("retry_orch", {"key": uuid.uuid4().hex, "succeed_on": 2})["output"] == {
        "ok": "succeeded on attempt 2"}
    assert api.run("parent_orch")["output"] == {"child": ["Hello x", "Hello y"], "failed_child": True}
    assert api.run("counter", 0)["output"] == 3


def test_session_cache_eviction_falls_back_to_replay(private_host, tmp_path):
    host, api = private_host(tmp_path / "data", {"MLPIPE_DURABLE_MAX_SESSIONS": "1"})
    ids = [api.start("any_loop", {"a": 2, "b": 1, "c": 0}).json()["id"] for _ in range(6)]
    assert [api.wait(i)["output"] for i in ids] == [["a", "b", "c"]] * 6


def test_second_host_on_the_same_data_dir_is_refused(private_host, tmp_path):
    private_host(tmp_path / "data")
    with pytest.raises(HostStartError) as info:
        private_host(tmp_path / "data")
    assert "already using the task hub" in str(info.value)
