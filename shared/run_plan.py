"""The run plan: every step's fingerprint, computed once when a run starts.

A step's fingerprint depends only on its definition, the run's parameters, its source snapshot
and its inputs' fingerprints (a dataset's blob names + MD5/ETag; PipelineData: the producing
step's fingerprint + output name). None of that needs an upstream step to have *run*, so the
`run_plan` activity computes all of them up front, checks the reuse index for those that can be
reused together with their whole upstream (in parallel waves), and records at once every step
whose whole upstream is reused too (the "reused prefix"). An all-reused pipeline therefore
finishes in one activity instead of one per step.

The plan is written to `runs/{runId}/plan.json` and never changes; step activities read it
once per process (cached), so a step needs no other reads to start.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from shared import deferred_writes, events
from shared.datastore import get_datastore
from shared.errors import InvalidRequest, NotFound
from shared.fingerprint import compute_step_fingerprint, dataset_fingerprint, pipeline_data_fingerprint, step_settings
from shared.graph import topological_order
from shared.pipelines import PublishedPipeline, get_published
from shared.registry import PipelineRegistry
from shared.reuse import ReuseIndex, ReuseRecord
from shared.runs import OutputRef, RunRecord, RunStore, StepRecord, utc_now
from shared.spec import DEFAULT_DATASTORE, resolve_dataset_path
from shared.statuses import RunStatus, StepStatus
from shared.storage import parallel_map

_PLAN_CACHE_SIZE = 64


@dataclass(frozen=True)
class DatasetInput:
    datastore: str
    path: str
    fingerprint: str | None
    error: str | None = None


def _resolve_datasets(run: RunRecord, published: PublishedPipeline) -> dict[str, DatasetInput]:
    """Each dataset the pipeline declares: where it is for this run and its content fingerprint."""
    definition = published.definition

    def resolve(name: str) -> DatasetInput:
        dataset = definition.datasets[name]
        datastore = dataset.datastore
        for parameter, assignment in (run.DataPathAssignments or {}).items():
            if dataset.path == "{parameters.%s}" % parameter:
                datastore = assignment["DataStoreName"]
        try:
            path = resolve_dataset_path(definition, name, run.ParameterAssignments)
            entries = get_datastore(datastore).dataset_entries(path)
        except (InvalidRequest, NotFound) as error:
            return DatasetInput(datastore, dataset.path, None, f"dataset '{name}': {error.message}")
        return DatasetInput(datastore, path, dataset_fingerprint(entries))

    names = sorted(definition.datasets)
    return dict(zip(names, parallel_map(resolve, names)))


def _step_plans(run: RunRecord, published: PublishedPipeline) -> tuple[dict, dict]:
    """({step: plan entry}, {step: fingerprint ingredients}) in topological order."""
    definition = published.definition
    datasets = _resolve_datasets(run, published)
    plans, ingredients = {}, {}
    for name in topological_order(definition.dependencies()):
        step = definition.step(name)
        input_fingerprints, dataset_inputs, errors = {}, {}, []
        for input_name, ref in step.input_refs().items():
            if ref.kind == "dataset":
                dataset = datasets[ref.name]
                if dataset.error:
                    errors.append(dataset.error)
                    continue
                input_fingerprints[input_name] = dataset.fingerprint
                dataset_inputs[input_name] = {"datastore": dataset.datastore, "path": dataset.path}
            else:
                producer = plans[ref.name]
                if producer["fingerprint"] is None:
                    errors.append(f"input '{input_name}': step '{ref.name}' cannot run")
                    continue
                input_fingerprints[input_name] = pipeline_data_fingerprint(producer["fingerprint"], ref.output)
        entry = {"fingerprint": None, "datasets": dataset_inputs, "error": "; ".join(errors) or None}
        if not errors:
            source_hash = published.record.SourceSnapshots.get(name)
            fingerprint = compute_step_fingerprint(
                step.type, step_settings(step, run.ParameterAssignments), source_hash, input_fingerprints,
                source_files=_snapshot_files(source_hash) if source_hash else None)
            entry["fingerprint"] = fingerprint.value
            ingredients[name] = fingerprint.ingredients
        plans[name] = entry
    return plans, ingredients


@functools.lru_cache(maxsize=256)
def _snapshot_files(source_hash: str) -> dict[str, str] | None:
    """{path: sha256} of a source snapshot (immutable, so cached): per-file fingerprint detail."""
    return PipelineRegistry().snapshot_files(source_hash)


_FIRST_WAVE = 4
_LARGEST_WAVE = 64


def reused_prefix(run_id: str, definition, plans: dict, reusable: set[str],
                  lookup: Callable[[str], ReuseRecord | None]) -> dict[str, ReuseRecord]:
    """{step: reuse record} of the steps reused whose every upstream step is reused too.

    Only steps that can still join the prefix are looked up, a wave at a time (in topological
    order), in parallel. Waves start small and double while every lookup hits, up to
    _LARGEST_WAVE: a fresh pipeline costs a handful of lookups (its first wave), an all-reused
    1,000-step chain a few dozen round trips. A record naming this very run is not reuse (the plan
    activity is running again after the step ran)."""
    order = topological_order(definition.dependencies())
    prefix: dict[str, ReuseRecord] = {}
    start, wave = 0, _FIRST_WAVE
    while start < len(order):
        candidates: list[str] = []
        for name in order[start:start + wave]:
            if name in reusable and all(up in prefix or up in candidates for up in definition.upstream(name)):
                candidates.append(name)
        start += wave
        found = parallel_map(lambda name: lookup(plans[name]["fingerprint"]), candidates)
        hits = dict(zip(candidates, found))
        for name in candidates:  # topological order: upstream steps were decided first
            hit = hits[name]
            if hit is not None and hit.run_id != run_id and all(up in prefix for up in definition.upstream(name)):
                prefix[name] = hit
        all_hit = all(name in prefix for name in candidates)
        wave = min(wave * 2, _LARGEST_WAVE) if all_hit else _FIRST_WAVE
    return prefix


def reused_step_record(step_name: str, compute: str, fingerprint: str, hit: ReuseRecord) -> StepRecord:
    now = utc_now()
    return StepRecord(
        Name=step_name, Status=StepStatus.COMPLETED.value, Reused=True, ReusedFromRunId=hit.run_id,
        Compute=compute, Fingerprint=fingerprint, StartTimeUtc=now, EndTimeUtc=now,
        Outputs={output: OutputRef(Datastore=DEFAULT_DATASTORE, Path=path) for output, path in hit.outputs.items()},
        Metrics=hit.metrics)


def outputs_body(outputs: dict[str, str]) -> dict:
    """{output: {"Datastore", "Path"}}: how step outputs travel through the orchestrator."""
    return {output: {"Datastore": DEFAULT_DATASTORE, "Path": path} for output, path in outputs.items()}


def plan_run(run_id: str) -> dict:
    """The run_plan activity: mark the run Running, fingerprint every step, settle the reused prefix.

    Returns {"reused": {step: outputs}} for the orchestrator. Idempotent: a re-run recomputes
    the same plan (datasets permitting) and rewrites the same records.
    """
    store = RunStore()
    run = store.modify_run(run_id, _mark_running)
    # The run's first events go out while the plan is made; a failed send still fails the activity.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlpipe-run-events") as background:
        started = (background.submit(events.run_queued_and_started, run)
                   if run.Status == RunStatus.RUNNING.value else None)
        published = get_published(run.PipelineId)
        plans, ingredients = _step_plans(run, published)
        definition = published.definition

        reusable = {name for name, entry in plans.items() if entry["fingerprint"]
                    and definition.step(name).allow_reuse and not run.RegenerateOutputs}
        prefix = reused_prefix(run_id, definition, plans, reusable, ReuseIndex().lookup)

        plan = {"runId": run_id, "pipelineId": run.PipelineId, "parameters": run.ParameterAssignments,
                "regenerateOutputs": run.RegenerateOutputs, "steps": plans}
        writes = [lambda: store.put_plan(run_id, plan), lambda: store.put_fingerprints(run_id, ingredients)]
        writes += [lambda n=name: store.put_step(run_id, reused_step_record(
            n, definition.step(n).compute, plans[n]["fingerprint"], prefix[n])) for name in prefix]
        parallel_map(lambda write: write(), writes)
        _remember_plan(run_id, plan)
        deferred_writes.note_written(run_id, list(prefix))
        if started is not None:
            started.result()
    parallel_map(lambda name: events.step_event(events.STEP_REUSED, run_id, name, run.PipelineId,
                                                status=StepStatus.COMPLETED.value, reused_from=prefix[name].run_id),
                 list(prefix))
    return {"reused": {name: outputs_body(hit.outputs) for name, hit in prefix.items()}}


def _mark_running(run: RunRecord) -> None:
    if not RunStatus(run.Status).is_terminal:
        run.Status = RunStatus.RUNNING.value
        run.StartTimeUtc = run.StartTimeUtc or utc_now()


_plans: "OrderedDict[str, dict]" = OrderedDict()
_plans_lock = threading.Lock()


def _remember_plan(run_id: str, plan: dict) -> None:
    with _plans_lock:
        _plans[run_id] = plan
        while len(_plans) > _PLAN_CACHE_SIZE:
            _plans.popitem(last=False)


def load_plan(run_id: str) -> dict:
    """The run's plan (cached per process: it never changes once written)."""
    with _plans_lock:
        plan = _plans.get(run_id)
    if plan is None:
        plan = RunStore().get_plan(run_id)
        _remember_plan(run_id, plan)
    return plan
