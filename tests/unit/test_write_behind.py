"""BurstGate and WriteBehind: work waits while arrivals come in a burst, and no longer than max_delay."""

from __future__ import annotations

import threading
import time

from shared.write_behind import BurstGate, CpuMeter, WriteBehind, flush_all


def test_a_burst_is_on_from_the_threshold_rate_and_ends_when_arrivals_slow_down():
    gate = BurstGate(rate=5, window=1.0, max_delay=10)
    for i in range(4):
        gate.arrive(100 + i * 0.01)
    assert not gate.in_burst(100.05)
    gate.arrive(100.05)
    assert gate.in_burst(100.05)
    assert gate.delay(100.0, 100.05) > 0  # held
    assert not gate.in_burst(101.02)  # the oldest arrivals left the one-second window
    assert gate.delay(100.0, 101.02) == 0


def test_held_work_is_due_after_max_delay_even_while_the_burst_goes_on():
    gate = BurstGate(rate=5, window=1.0, max_delay=2)
    now = 100.0
    while now < 103:
        gate.arrive(now)
        now += 0.01
    assert gate.in_burst(now)
    assert gate.delay(now - 1.0, now) > 0
    assert gate.delay(now - 2.0, now) == 0


def test_writes_wait_for_the_end_of_a_burst_and_flush_does_them_at_once():
    done: list[int] = []
    lock = threading.Lock()

    def write(i):
        def run():
            with lock:
                done.append(i)
        return run

    behind = WriteBehind("test", BurstGate(rate=5, window=0.5, max_delay=30))
    for i in range(20):
        behind.submit(write(i))
    time.sleep(0.1)
    assert done == []  # still in the burst
    deadline = time.monotonic() + 5
    while len(done) < 20:
        assert time.monotonic() < deadline, done
        time.sleep(0.02)
    assert sorted(done) == list(range(20))

    for i in range(20, 40):
        behind.submit(write(i))
    behind.flush()
    assert sorted(done) == list(range(40)) and behind.pending() == 0


def test_after_a_failed_write_flush_leaves_the_rest_to_the_writer_thread():
    done = []

    def fail():
        raise OSError("storage down")

    behind = WriteBehind("test", BurstGate(rate=2, max_delay=30))
    behind.submit(fail)
    behind.submit(lambda: done.append("ok"))  # a burst: both wait
    behind.flush()  # gives up at the failure instead of failing slowly through the rest
    deadline = time.monotonic() + 5
    while behind.pending():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert done == ["ok"]


def test_flush_all_flushes_every_instance():
    done = []
    first, second = WriteBehind("a", BurstGate(rate=1, max_delay=60)), WriteBehind("b", BurstGate(rate=1, max_delay=60))
    first.submit(lambda: done.append("a"))
    second.submit(lambda: done.append("b"))
    assert flush_all(timeout=5)
    assert sorted(done) == ["a", "b"]


class FakeCpu:
    """A process CPU clock the test moves by hand."""

    def __init__(self):
        self.used = 0.0

    def __call__(self) -> float:
        return self.used


def test_cpu_meter_reports_the_share_of_one_cpu_over_the_last_window():
    cpu = FakeCpu()
    meter = CpuMeter(window=1.0, clock=cpu)
    assert meter.share(100.0) == 1.0  # nothing to compare with yet: counted as busy
    for step in range(1, 21):  # 2 s at 30 % of a CPU
        cpu.used += 0.03
        share = meter.share(100.0 + step * 0.1)
    assert abs(share - 0.3) < 0.01
    for step in range(21, 31):  # then 1 s at 90 %
        cpu.used += 0.09
        share = meter.share(100.0 + step * 0.1)
    assert abs(share - 0.9) < 0.01
    assert meter.share(160.0) == 1.0  # after a long quiet spell it cannot tell yet
