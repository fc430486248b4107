"""The in-process short cut for durable client starts answers exactly as the HTTP route would,
and only for this host's own start URLs."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from devhost.app_loader import load_app
from devhost.durable import local_client
from devhost.durable.client_binding import binding_json
from devhost.durable.engine import DurableEngine
from devhost.durable.rpc import DurableRpc
from devhost.durable.store import TaskHubStore

SAMPLE_APP = Path(__file__).resolve().parent / "sample_app"


def test_starts_of_this_host_are_answered_in_process_and_nothing_else(tmp_path, monkeypatch):
    monkeypatch.setenv("SAMPLE_OUT_DIR", str(tmp_path))
    binding = binding_json(port=1, hub_name="LocalHub", function_key="key", rpc_secret="secret")
    base = json.loads(binding)["rpcBaseUrl"]

    async def scenario():
        engine = DurableEngine(load_app(SAMPLE_APP), TaskHubStore(tmp_path / "hub.sqlite"),
                               max_concurrent_activities=2)
        await engine.start()
        try:
            assert local_client.install(DurableRpc(engine, binding), binding)
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
            await asyncio.sleep(0)
        finally:
            local_client._routes.pop(base, None)
            engine.stop()
            engine.store.close()

    asyncio.run(scenario())
