"""Assemble and run the local host: settings, Azurite, the app, the durable engine, HTTP, timers."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from shared.compute.local import discard_spare_interpreter
from shared.settings import DEVELOPMENT_STORAGE

from .app_loader import AppLoadError, load_app
from .auth import KeyChecker, load_or_create_key
from .azurite import AzuriteProcess, port_is_open, start_azurite
from .blob_triggers import BlobTriggers
from .durable.client_binding import binding_json
from .durable.engine import DurableEngine
from .durable.rpc import DurableRpc
from .durable.store import TaskHubStore
from .host_config import HostConfig
from .http_server import HttpFrontEnd
from .queue_triggers import QueueTriggers
from .redaction import REDACT
from .timers import TimerScheduler

log = logging.getLogger("devhost")

READY_MESSAGE = "mlpipe host ready on http://127.0.0.1:{port}"


def data_dir_for(app_root: Path) -> Path:
    configured = os.environ.get("MLPIPE_DATA_DIR")
    return Path(configured).resolve() if configured else (app_root / ".mlpipe").resolve()


def uses_development_storage() -> bool:
    value = os.environ.get("AzureWebJobsStorage", "").strip().rstrip(";")
    return value == "" or value.lower() == DEVELOPMENT_STORAGE.lower()


def maybe_start_azurite(data_dir: Path) -> AzuriteProcess | None:
    if not uses_development_storage() or port_is_open(10000):
        return None
    print(f"starting Azurite (data in {data_dir / 'azurite'})", flush=True)
    return start_azurite(data_dir / "azurite")


@dataclass
class HostOptions:
    app_root: Path
    port: int = 7071


async def serve(options: HostOptions, stop: asyncio.Event) -> None:
    app_root = options.app_root.resolve()
    data_dir = data_dir_for(app_root)
    config = HostConfig.load(app_root)
    if not (app_root / "function_app.py").is_file():
        raise AppLoadError(f"no function_app.py in {app_root}")
    azurite = maybe_start_azurite(data_dir)
    store = None
    runner = None
    engine = None
    timers = None
    triggers: list = []
    pool = ThreadPoolExecutor(thread_name_prefix="function")
    try:
        index = load_app(app_root)
        key, key_path = load_or_create_key(data_dir)
        rpc_secret = secrets.token_urlsafe(24)
        REDACT.add(key, rpc_secret)
        if key_path is not None:
            print(f"function key stored in {key_path}", flush=True)
        binding = binding_json(port=options.port, hub_name=config.hub_name, function_key=key, rpc_secret=rpc_secret)
        store = TaskHubStore(data_dir / "durable" / f"{config.hub_name}.sqlite")
        engine = DurableEngine(index, store, max_concurrent_activities=config.max_concurrent_activities,
                               full_replay=os.environ.get("MLPIPE_DURABLE_FULL_REPLAY") == "1",
                               max_sessions=int(os.environ.get("MLPIPE_DURABLE_MAX_SESSIONS") or 512))
        front = HttpFrontEnd(index.http, route_prefix=config.route_prefix, keys=KeyChecker(key, rpc_secret),
                             max_request_bytes=config.max_request_bytes, binding_json=binding,
                             rpc=DurableRpc(engine, binding), pool=pool)
        runner = web.AppRunner(front.application(), access_log=None, handle_signals=False,
                               shutdown_timeout=5.0)  # in-flight requests get 5 s on stop
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", options.port).start()
        await engine.start()
        timers = TimerScheduler(index.timers, front.call, binding, data_dir / "timers")
        timers.start()
        triggers = [QueueTriggers(index.queues, front.call, binding, app_root),
                    BlobTriggers(index.blobs, front.call, binding, host_id=config.hub_name.lower())]
        for trigger in triggers:
            trigger.start()
        print(READY_MESSAGE.format(port=options.port), flush=True)
        await stop.wait()
        log.info("stopping")
    finally:
        if timers is not None:
            await timers.stop()
        for trigger in triggers:
            await trigger.stop()
        if engine is not None:
            engine.stop()
        discard_spare_interpreter()
        # The SDK's client session holds keep-alive connections to our own server: close it first,
        # or the server's cleanup waits its whole shutdown timeout for them.
        await close_sdk_http_session()
        if runner is not None:
            await runner.cleanup()
        if store is not None:
            store.close()
        pool.shutdown(wait=False, cancel_futures=True)
        if azurite is not None:
            azurite.stop()


async def close_sdk_http_session() -> None:
    """The durable SDK keeps one module-level aiohttp session for client calls; close it on the way out."""
    try:
        from azure.durable_functions.models.utils import http_utils
        await http_utils._close_session()
    except Exception:  # best effort: only avoids an "Unclosed client session" warning
        log.debug("could not close the durable SDK's HTTP session", exc_info=True)


async def run_until_signalled(options: HostOptions) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await serve(options, stop)
