"""Client starts that come in a burst (their first episodes may wait for it to end, so accepting work
is not starved by doing it): every instance still runs, and a crash loses none of them. Which
starts are held is tested in-process (test_local_client.py), where the CPU reading is controlled."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

N = 30


def start_burst(api, prefix: str) -> list[str]:
    ids = [f"{prefix}-{i}" for i in range(N)]
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda i: api.start("sequence", [i], instance_id=i), ids))
    assert all(r.status_code == 202 for r in responses), [r.text for r in responses if r.status_code != 202]
    return ids


def test_every_instance_of_a_burst_of_starts_runs(api):
    ids = start_burst(api, f"burst-{uuid.uuid4().hex[:8]}")
    for instance_id in ids:
        assert api.wait(instance_id)["output"] == [f"Hello {instance_id}"]


def test_a_held_instance_takes_events_and_terminate_at_once(api):
    ids = start_burst(api, f"held-{uuid.uuid4().hex[:8]}")
    waiting = f"wait-{uuid.uuid4().hex[:8]}"
    assert api.start("wait_event", instance_id=waiting).status_code == 202  # possibly held behind the burst
    api.session.post(f"{api.host.url}/api/raise/{waiting}/approve", json="now", timeout=10)
    assert api.wait(waiting, timeout=5)["output"] == {"approved": '"now"'}
    for instance_id in ids:
        api.wait(instance_id)


def test_a_crash_right_after_a_burst_loses_no_started_instance(private_host, tmp_path):
    data_dir = tmp_path / "data"
    host, api = private_host(data_dir)
    ids = start_burst(api, "crash-burst")
    host.kill()  # most of them never ran an episode
    host, api = private_host(data_dir)
    for instance_id in ids:
        assert api.wait(instance_id, timeout=30)["output"] == [f"Hello {instance_id}"]
