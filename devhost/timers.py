"""Timer triggers: NCRONTAB schedules (UTC, like Azure by default), `%SETTING%` expansion, run_on_startup."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any, Awaitable, Callable

from azure.functions.timer import TimerRequest  # the concrete class; func.TimerRequest is abstract

from .app_loader import TimerFunction
from .durable.history import utcnow
from .invocation import with_context
from .ncrontab import CronSchedule, expand_settings

log = logging.getLogger("devhost.timers")

# Don't flag a run as past due for ordinary scheduling jitter.
PAST_DUE_SLACK_SECONDS = 1.0


class TimerScheduler:
    def __init__(self, timers: list[TimerFunction], call: Callable[[Any, dict], Awaitable[Any]], binding_json: str):
        self.timers = timers
        self.call = call
        self.binding_json = binding_json
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
        if timer.run_on_startup:
            await self._fire(timer, past_due=False)
        due = schedule.next_after(utcnow())
        while True:
            await asyncio.sleep(max(0.0, (due - utcnow()).total_seconds()))
            now = utcnow()
            if now < due:
                continue
            await self._fire(timer, past_due=(now - due).total_seconds() > PAST_DUE_SLACK_SECONDS)
            due = schedule.next_after(max(utcnow(), due))

    async def _fire(self, timer: TimerFunction, past_due: bool) -> None:
        try:
            kwargs: dict[str, Any] = {timer.trigger_arg: TimerRequest(past_due=past_due)}
            for name in timer.client_args:
                kwargs[name] = self.binding_json
            with_context(kwargs, timer.wants_context, timer.name)
            await self.call(timer.user_function, kwargs)
            log.info("timer %s ran%s", timer.name, " (past due)" if past_due else "")
        except Exception:
            log.exception("timer function %s failed", timer.name)
