"""Client starts in-process: the short cut answers exactly as the HTTP route would, and only for
this host's own start URLs; a burst of starts on a busy host holds first episodes until it ends."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import sys
import time
from pathlib import Path

import pytest

from devhost.app_loader import load_app
from devhost.durable import local_client
from devhost.durable.client_binding import binding_json
from devhost.durable.engine import DurableEngine
from devhost.durable.rpc import DurableRpc
from devhost.durable.store import TaskHubStore
from shared.write_behind import CpuMeter

SAMPLE_APP = Path(__file__).resolve().parent / "sample_app"


@functools.lru_cache(maxsize=1)
def sample_index():
    """Loaded once (an app registers its functions once per process); the sample's `function_app`
    module and folder are then taken off sys.modules and sys.path again, so tests that import the
    repository's own function_app.py in the same process get that one."""
    saved_module, saved_path = sys.modules.pop("function_app", None), list(sys.path)
    try:
        return load_app(SAMPLE_APP)
    finally:
        sys.path[:] = saved_path
        sys.modules.pop("function_app", None)
        if saved_module is not None:
            sys.modules["function_app"] = saved_module


@contextlib.asynccontextmanager
async def running_engine(tmp_path, monkeypatch):
    """A started engine on the sample app, its rpc short cut installed; yields (engine, rpcBaseUrl)."""
    monkeypatch.setenv("SAMPLE_OUT_DIR", str(tmp_path))
    binding = binding_json(port=1, hub_name="LocalHub", function_key="key", rpc_secret="secret")
    base = json.loads(binding)["rpcBaseUrl"]
    engine = DurableEngine(sample_index(), TaskHubStore(tmp_path / "hub.sqlite"), max_concurrent_activities=2)
    await engine.start()
    try:
        assert local_client.install(DurableRpc(engine, binding), binding)
        yield engine, base
    finally:
        local_client._routes.pop(base, None)
        engine.stop()
        engine.store.close()


def test_starts_of_this_host_are_answered_in_process_and_nothing_else(tmp_path, monkeypatch):
    async def scenario():
        async with running_engine(tmp_path, monkeypatch) as (engine, base):
            status, body = local_client.local_start(f"{base}orchestrators/sequence/one", json.dumps(["x"]))
            assert status == 202 and body["id"] == "one" and "statusQueryGetUri" in body
            assert engine.lookup("one")["input"] == '["x"]'
            status, body = local_client.local_start(f"{base}orchestrators/sequence/one", None)
            assert status == 409 and "already exists" in body["Message"]  # the SDK raises it
            status, body = local_client.local_start(f"{base}orchestrators/no_such_orchestrator", None)
            assert status == 400 and "doesn't exist" in body["ExceptionMessage"]
            generated = local_client.local_start(f"{base}orchestrators/sequence?version=2", None)[1]["id"]
            assert engine.lookup(generated)["version"] == "2"
            other_host = base.replace("secret", "other")
            for url in (f"{other_host}orchestrators/sequence", f"{base}orchestrators/sequence/x?timeout=5",
                        f"{base}instances/one", f"{base}orchestrators/sequence/a/b"):
                assert local_client.local_start(url, None) is None  # goes over HTTP as before

    asyncio.run(scenario())


class Cpu:
    """A process CPU clock for the engine's meter: `busy` says how fast it runs against the wall clock."""

    def __init__(self, busy: float):
        self.busy = busy
        self.started = time.monotonic()

    def __call__(self) -> float:
        return (time.monotonic() - self.started) * self.busy


@pytest.mark.parametrize("busy, held", [(0.9, True), (0.1, False)])
def test_a_burst_of_starts_holds_first_episodes_only_while_the_host_is_busy(tmp_path, monkeypatch, busy, held):
    async def scenario():
        async with running_engine(tmp_path, monkeypatch) as (engine, base):
            engine._cpu_meter = CpuMeter(clock=Cpu(busy))
            engine._cpu_meter.share(time.monotonic())
            await asyncio.sleep(0.3)  # the meter has a reading from then on
            for i in range(20):
                local_client.local_start(f"{base}orchestrators/sequence/b{i}", json.dumps([str(i)]))
                await asyncio.sleep(0.01)
            assert bool(engine._held) is held
            assert all(engine.lookup(f"b{i}") is not None for i in range(20))  # committed either way
            deadline = time.monotonic() + 10  # the burst is over: everything runs
            while any(engine.lookup(f"b{i}")["status"] != "Completed" for i in range(20)):
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)

    asyncio.run(scenario())
