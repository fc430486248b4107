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
