"""Timer triggers: NCRONTAB schedules (UTC, like Azure by default), `%SETTING%` expansion, run_on_startup,
and the schedule monitor: with use_monitor (default: on when the interval is at least a minute, as in
Azure) the last/next occurrence is kept in `<data dir>/timers/<function>.json`, so an occurrence missed
while the host was down runs once at startup with `past_due=True`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
from pathlib import Path
from typing import Any, Awaitable, Callable

from azure.functions.timer import TimerRequest  # the concrete class; func.TimerRequest is abstract

from .app_loader import TimerFunction
from .durable.history import iso, parse_iso, utcnow
from .invocation import with_context
from .ncrontab import CronSchedule, expand_settings

log = logging.getLogger("devhost.timers")

# Don't flag a run as past due for ordinary scheduling jitter.
PAST_DUE_SLACK_SECONDS = 1.0


class ScheduleMonitor:
    """Last/next occurrence per timer function, persisted like the host's schedule status blobs."""

    def __init__(self, folder: Path):
        self.folder = folder

    def _path(self, name: str) -> Path:
        return self.folder / f"{name}.json"

    def load(self, name: str) -> dict | None:
        try:
            return json.loads(self._path(name).read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return None

    def save(self, name: str, last: dt.datetime, next_due: dt.datetime) -> dict:
        status = {"Last": iso(last), "Next": iso(next_due), "LastUpdated": iso(utcnow())}
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self._path(name).with_suffix(".tmp")
        tmp.write_text(json.dumps(status), encoding="utf-8")
        tmp.replace(self._path(name))
        return status


def monitored(timer: TimerFunction, schedule: CronSchedule) -> bool:
    if timer.use_monitor is not None:
        return bool(timer.use_monitor)
    first = schedule.next_after(utcnow())
    return (schedule.next_after(first) - first).total_seconds() >= 60


class TimerScheduler:
    def __init__(self, timers: list[TimerFunction], call: Callable[[Any, dict], Awaitable[Any]], binding_json: str,
                 status_dir: Path):
        self.timers = timers
        self.call = call
        self.binding_json = binding_json
        self.monitor = ScheduleMonitor(status_dir)
        self.schedules = {t.name: CronSchedule.parse(expand_settings(t.schedule, os.environ.get)) for t in timers}
        self._tasks: list[asyncio.Task] = []

    def start(self) -> None:
        for timer in self.timers:
            self._tasks.append(asyncio.ensure_future(self._loop(timer)))
            log.info("timer %s: schedule '%s'", timer.name, self.schedules[timer.name].text)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _loop(self, timer: TimerFunction) -> None:
        schedule = self.schedules[timer.name]
        use_monitor = monitored(timer, schedule)
        status = self.monitor.load(timer.name) if use_monitor else None
        missed = status is not None and parse_iso(status["Next"]) < utcnow()
        if timer.run_on_startup or missed:
            await self._fire(timer, schedule, past_due=missed, status=status, use_monitor=use_monitor)
        due = schedule.next_after(utcnow())
        while True:
            await asyncio.sleep(max(0.0, (due - utcnow()).total_seconds()))
            now = utcnow()
            if now < due:
                continue
            status = await self._fire(timer, schedule, past_due=(now - due).total_seconds() > PAST_DUE_SLACK_SECONDS,
                                      status=status, use_monitor=use_monitor)
            due = schedule.next_after(max(utcnow(), due))

    async def _fire(self, timer: TimerFunction, schedule: CronSchedule, *, past_due: bool, status: dict | None,
                    use_monitor: bool) -> dict | None:
        try:
            request = TimerRequest(past_due=past_due, schedule_status=status or {},
                                   schedule={"AdjustForDST": False})
            kwargs: dict[str, Any] = {timer.trigger_arg: request}
            for name in timer.client_args:
                kwargs[name] = self.binding_json
            with_context(kwargs, timer.wants_context, timer.name)
            await self.call(timer.user_function, kwargs)
            log.info("timer %s ran%s", timer.name, " (past due)" if past_due else "")
        except Exception:
            log.exception("timer function %s failed", timer.name)
        if not use_monitor:
            return None
        now = utcnow()
        return self.monitor.save(timer.name, now, schedule.next_after(now))
