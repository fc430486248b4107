import json
import time


def test_timer_trigger_fires_every_second(host, sample_out):
    ticks = sample_out / "ticks.txt"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if ticks.exists() and len(ticks.read_text().splitlines()) >= 2:
            break
        time.sleep(0.1)
    lines = ticks.read_text().splitlines()
    assert len(lines) >= 2
    assert all(line.endswith("past_due=False") for line in lines)


def test_missed_occurrence_runs_once_at_startup_past_due(private_host, tmp_path):
    data_dir = tmp_path / "data"
    (data_dir / "timers").mkdir(parents=True)
    (data_dir / "timers" / "yearly.json").write_text(json.dumps(
        {"Last": "2020-01-01T00:00:00.000000Z", "Next": "2021-01-01T00:00:00.000000Z",
         "LastUpdated": "2020-01-01T00:00:00.000000Z"}))
    host, _ = private_host(data_dir)
    out = private_host.out_dir / "yearly.txt"
    deadline = time.monotonic() + 5
    while not out.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert out.read_text().split() == ["past_due=True"]
    status_file = data_dir / "timers" / "yearly.json"
    while json.loads(status_file.read_text())["Next"] < "2026" and time.monotonic() < deadline:
        time.sleep(0.05)  # the status is written right after the function returns
    status = json.loads(status_file.read_text())
    assert status["Next"].endswith("-01-01T00:00:00.000000Z") and status["Next"] > "2026"
    host.stop()
    host, _ = private_host(data_dir)  # nothing missed this time
    time.sleep(0.5)
    assert out.read_text().split() == ["past_due=True"]
