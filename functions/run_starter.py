"""Start a run's orchestration exactly once (instance id = run id), for every trigger.

`start_new` on an instance id that is already running answers 409 (the SDK raises); on one that
finished it would *restart* it (Durable's default for non-running states). So a duplicate is
never started blindly: when the run record existed already, the orchestration is only started if
Durable has no instance with that id and the run is still Queued.
"""

from __future__ import annotations

import logging

import azure.durable_functions as df

from orchestrations.pipeline_run import ORCHESTRATOR_NAME
from shared.submissions import RunStart

log = logging.getLogger("mlpipe.triggers")


async def instance_exists(client: df.DurableOrchestrationClient, instance_id: str) -> bool:
    status = await client.get_status(instance_id)
    return bool(status) and getattr(status, "runtime_status", None) is not None


async def start_run(client: df.DurableOrchestrationClient, start: RunStart) -> bool:
    """Start the orchestration of `start` unless it exists; True if this call started it."""
    if start.orchestration_input is None:
        return False
    if not start.created and await instance_exists(client, start.run_id):
        return False
    try:
        await client.start_new(ORCHESTRATOR_NAME, start.run_id, start.orchestration_input)
    except Exception:
        if await instance_exists(client, start.run_id):  # another host started it a moment ago
            return False
        raise
    log.info("started run %s", start.run_id)
    return True
