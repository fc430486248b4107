"""`python -m devhost [--port 7071] [--app-root DIR]`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import threading
import time
from pathlib import Path

from shared.settings import apply_local_settings

from .app_loader import AppLoadError
from .durable.store import TaskHubLocked
from .host import HostOptions, run_until_signalled
from .ncrontab import CronError
from .redaction import setup_logging

# Activity/function threads still running at shutdown are abandoned after this grace period
# (their work items stay pending in the task hub and run again on the next start).
SHUTDOWN_GRACE_SECONDS = 5.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m devhost", description="Local Azure Functions + Durable host.")
    parser.add_argument("--port", type=int, default=7071, help="HTTP port on 127.0.0.1 (default 7071)")
    parser.add_argument("--app-root", type=Path, default=Path.cwd(),
                        help="folder holding function_app.py and host.json (default: current folder)")
    parser.add_argument("--log-level", default=os.environ.get("MLPIPE_LOG_LEVEL", "INFO"))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(getattr(logging, str(args.log_level).upper(), logging.INFO))
    app_root = args.app_root.resolve()
    if not app_root.is_dir():
        print(f"devhost: app root {app_root} is not a folder", file=sys.stderr, flush=True)
        return 2
    os.chdir(app_root)  # like the Functions host: the app runs in its own folder, relative paths resolve there
    apply_local_settings(app_root)
    try:
        asyncio.run(run_until_signalled(HostOptions(app_root=app_root, port=args.port)))
    except (AppLoadError, CronError, TaskHubLocked, OSError) as exc:
        print(f"devhost: {exc}", file=sys.stderr, flush=True)
        return 1
    _exit_despite_stuck_threads()
    return 0


HOST_THREAD_PREFIXES = ("function", "activity")


def _exit_despite_stuck_threads() -> None:
    deadline = time.monotonic() + SHUTDOWN_GRACE_SECONDS
    while time.monotonic() < deadline:
        # Only the host's own function and activity threads count: idle worker threads of the
        # app's executors end by themselves when the interpreter exits.
        busy = [t for t in threading.enumerate() if t is not threading.main_thread() and t.is_alive()
                and not t.daemon and t.name.startswith(HOST_THREAD_PREFIXES)]
        if not busy:
            return
        time.sleep(0.05)
    logging.getLogger("devhost").warning("exiting with %d function thread(s) still running", len(busy))
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
