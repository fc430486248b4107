"""The scheduler (API.md §4 Timer): one timer trigger on `%MLPIPE_SCHEDULER_CRON%` starts every due
recurrence/cron schedule once per due time.

Each due time's run id is derived from (schedule, due time) and is the orchestration instance id,
so the timer firing twice, or two hosts firing, start one run. Due times missed while no host was
running collapse into one catch-up run for the latest of them (shared.recurrence.latest_due).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os

import azure.durable_functions as df
import azure.functions as func

from functions.run_starter import start_run
from shared.errors import MlpipeError, StorageError, TransientError
from shared.redact import redact
from shared.schedules import ScheduleStore
from shared.settings import Settings
from shared.submissions import deterministic_run_id, submit_once

bp = df.Blueprint()
log = logging.getLogger("mlpipe.scheduler")

# The Functions host resolves %MLPIPE_SCHEDULER_CRON% from app settings; give the local host the
# documented default when it is unset (in Azure, set the app setting).
os.environ.setdefault("MLPIPE_SCHEDULER_CRON", Settings.scheduler_cron)


@bp.timer_trigger(arg_name="timer", schedule="%MLPIPE_SCHEDULER_CRON%", run_on_startup=False, use_monitor=True)
@bp.durable_client_input(client_name="client")
async def scheduler(timer: func.TimerRequest, client: df.DurableOrchestrationClient) -> None:
    await fire_due_schedules(client, dt.datetime.now(dt.timezone.utc))


async def fire_due_schedules(client: df.DurableOrchestrationClient, now: dt.datetime) -> list[str]:
    """Start one run per due schedule; the run ids started or found."""
    store = ScheduleStore()
    fired = []
    for schedule, due in await asyncio.to_thread(store.due_now, now):
        run_id = deterministic_run_id("sched", schedule.Name, due)
        body = schedule.submit_body("Schedule")
        try:
            start = await asyncio.to_thread(submit_once, body, run_id, pipeline_id=schedule.PipelineId,
                                            endpoint_name=schedule.EndpointName)
            await start_run(client, start)
        except (TransientError, StorageError) as error:
            log.warning("schedule %s: due %s not started yet (%s); next tick retries", schedule.Name, due,
                        redact(error.message))
            continue
        except MlpipeError as error:  # can never succeed for this due time (pipeline disabled, bad parameter)
            log.error("schedule %s: due %s failed: %s", schedule.Name, due, redact(error.message))
            await asyncio.to_thread(store.record_run, schedule.Name, "", due,
                                    {"code": error.code, "message": redact(error.message)})
            continue
        await asyncio.to_thread(store.record_run, schedule.Name, run_id, due)
        fired.append(run_id)
        log.info("schedule %s: due %s -> run %s", schedule.Name, due.isoformat(), run_id)
    return fired
