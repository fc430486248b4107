"""A sample Durable Functions app (v2 model) that exercises every pattern the devhost must run.

Side effects go to files under $SAMPLE_OUT_DIR so tests can count them.
"""

import datetime
import json
import os
import time
from pathlib import Path

import azure.durable_functions as df
import azure.functions as func

app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)


def out_dir() -> Path:
    path = Path(os.environ.get("SAMPLE_OUT_DIR", "."))
    path.mkdir(parents=True, exist_ok=True)
    return path


def append(name: str, line: str) -> None:
    with open(out_dir() / name, "a", encoding="utf-8") as handle:
        handle.write(line + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def json_response(body, status=200):
    return func.HttpResponse(json.dumps(body), status_code=status, mimetype="application/json")


# ---------------------------------------------------------------- HTTP + durable client
@app.route(route="start/{name}/{instance_id?}", methods=["POST"])
@app.durable_client_input(client_name="client")
async def start(req: func.HttpRequest, client) -> func.HttpResponse:
    body = req.get_body()
    payload = json.loads(body) if body else None
    instance_id = await client.start_new(req.route_params["name"], req.route_params.get("instance_id"), payload)
    return client.create_check_status_response(req, instance_id)


@app.route(route="status/{instance_id}", methods=["GET"])
@app.durable_client_input(client_name="client")
async def status(req: func.HttpRequest, client) -> func.HttpResponse:
    show_history = req.params.get("history") == "1"
    s = await client.get_status(req.route_params["instance_id"], show_history=show_history,
                                show_history_output=show_history)
    if not s:
        return json_response({"found": False}, 404)
    body = {"found": True, "runtimeStatus": s.runtime_status.value if s.runtime_status else None,
            "output": s.output, "customStatus": s.custom_status, "input": s.input_}
    if show_history:
        body["history"] = getattr(s, "historyEvents", None)
    return json_response(body)


@app.route(route="instances", methods=["GET"])
@app.durable_client_input(client_name="client")
async def instances(req: func.HttpRequest, client) -> func.HttpResponse:
    statuses = [df.OrchestrationRuntimeStatus(s) for s in req.params.get("status", "").split(",") if s]
    found = await client.get_status_by(runtime_status=statuses or None)
    return json_response([{"id": s.instance_id, "runtimeStatus": s.runtime_status.value} for s in found])


@app.route(route="terminate/{instance_id}", methods=["POST"])
@app.durable_client_input(client_name="client")
async def terminate(req: func.HttpRequest, client) -> func.HttpResponse:
    await client.terminate(req.route_params["instance_id"], req.params.get("reason", "stopped by test"))
    return json_response({"terminated": True}, 202)


@app.route(route="raise/{instance_id}/{event}", methods=["POST"])
@app.durable_client_input(client_name="client")
async def raise_event(req: func.HttpRequest, client) -> func.HttpResponse:
    await client.raise_event(req.route_params["instance_id"], req.route_params["event"], req.get_json())
    return json_response({"raised": True}, 202)


@app.route(route="suspend/{instance_id}", methods=["POST"])
@app.durable_client_input(client_name="client")
async def suspend(req: func.HttpRequest, client) -> func.HttpResponse:
    await client.suspend(req.route_params["instance_id"], "test")
    return json_response({"suspended": True}, 202)


@app.route(route="resume/{instance_id}", methods=["POST"])
@app.durable_client_input(client_name="client")
async def resume(req: func.HttpRequest, client) -> func.HttpResponse:
    await client.resume(req.route_params["instance_id"], "test")
    return json_response({"resumed": True}, 202)


@app.route(route="purge/{instance_id}", methods=["DELETE"])
@app.durable_client_input(client_name="client")
async def purge(req: func.HttpRequest, client) -> func.HttpResponse:
    result = await client.purge_instance_history(req.route_params["instance_id"])
    return json_response({"deleted": result.instances_deleted})


@app.route(route="anon", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def anonymous(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("anonymous ok", mimetype="text/plain")


@app.route(route="echo", methods=["POST"])
def echo(req: func.HttpRequest) -> func.HttpResponse:
    return json_response({"bytes": len(req.get_body()), "params": dict(req.params)})


@app.route(route="items/{item_id:int}", methods=["GET"])
def item(req: func.HttpRequest) -> func.HttpResponse:
    return json_response({"item": int(req.route_params["item_id"])})


@app.route(route="boom", methods=["GET"])
def boom(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("secret internals that must not leak")


# ---------------------------------------------------------------- timer trigger
@app.timer_trigger(schedule="%SAMPLE_TIMER_SCHEDULE%", arg_name="timer", run_on_startup=False)
def ticker(timer: func.TimerRequest) -> None:
    append("ticks.txt", f"{time.time()} past_due={timer.past_due}")


@app.timer_trigger(schedule="0 0 0 1 1 *", arg_name="timer", use_monitor=True)
def yearly(timer: func.TimerRequest) -> None:
    append("yearly.txt", f"past_due={timer.past_due}")


# ---------------------------------------------------------------- orchestrations
@app.orchestration_trigger(context_name="context")
def sequence(context: df.DurableOrchestrationContext):
    names = context.get_input() or ["Tokyo", "Seattle", "London"]
    results = []
    for name in names:
        results.append((yield context.call_activity("hello", name)))
    return results


@app.orchestration_trigger(context_name="context")
def fan_out(context: df.DurableOrchestrationContext):
    spec = context.get_input()
    tasks = [context.call_activity(record, {"item": i, "sleep": spec.get("sleep", 0), "file": spec["file"]})
             for i in range(spec["n"])]
    results = yield context.task_all(tasks)
    return sum(results)


@app.orchestration_trigger(context_name="context")
def any_loop(context: df.DurableOrchestrationContext):
    """The mlpipe orchestrator's shape: per-step pending tasks re-yielded with task_any."""
    steps = context.get_input()  # {"name": polls_needed}
    pending = {}
    state = {}
    for name in steps:
        pending[name] = context.call_activity("step_start", name)
        state[name] = "starting"
    finished = []
    while pending:
        done = yield context.task_any(list(pending.values()))
        name = next(n for n, t in pending.items() if t is done)
        del pending[name]
        if state[name] == "starting" or state[name] == "polled":
            count = done.result if state[name] == "polled" else 0
            if count >= steps[name]:
                finished.append(name)
                continue
            fire_at = context.current_utc_datetime + datetime.timedelta(milliseconds=200)
            pending[name] = context.create_timer(fire_at)
            state[name] = "waiting"
            state[name + ":count"] = count
        elif state[name] == "waiting":
            pending[name] = context.call_activity("step_poll", {"name": name, "count": state[name + ":count"]})
            state[name] = "polled"
        context.set_custom_status({"finished": sorted(finished)})
    return sorted(finished)


@app.orchestration_trigger(context_name="context")
def timer_orch(context: df.DurableOrchestrationContext):
    start = context.current_utc_datetime
    yield context.create_timer(start + datetime.timedelta(seconds=1))
    return (context.current_utc_datetime - start).total_seconds()


@app.orchestration_trigger(context_name="context")
def retry_orch(context: df.DurableOrchestrationContext):
    options = df.RetryOptions(first_retry_interval_in_milliseconds=100, max_number_of_attempts=3)
    spec = context.get_input()
    try:
        result = yield context.call_activity_with_retry("flaky", options, spec)
        return {"ok": result}
    except Exception as exc:
        return {"failed": str(exc)}


@app.orchestration_trigger(context_name="context")
def parent_orch(context: df.DurableOrchestrationContext):
    child = yield context.call_sub_orchestrator("sequence", ["x", "y"])
    failed = None
    try:
        yield context.call_sub_orchestrator("failing", None)
    except Exception as exc:
        failed = str(exc)
    return {"child": child, "failed_child": failed is not None}


@app.orchestration_trigger(context_name="context")
def parent_of_slow(context: df.DurableOrchestrationContext):
    return (yield context.call_sub_orchestrator("slow_sequence", context.get_input(), "slow-child"))


@app.orchestration_trigger(context_name="context")
def flaky_child(context: df.DurableOrchestrationContext):
    return (yield context.call_activity("flaky", context.get_input()))


@app.orchestration_trigger(context_name="context")
def sub_retry(context: df.DurableOrchestrationContext):
    options = df.RetryOptions(first_retry_interval_in_milliseconds=50, max_number_of_attempts=3)
    return (yield context.call_sub_orchestrator_with_retry("flaky_child", options, context.get_input()))


@app.orchestration_trigger(context_name="context")
def wait_event(context: df.DurableOrchestrationContext):
    timeout = context.current_utc_datetime + datetime.timedelta(seconds=30)
    event = context.wait_for_external_event("approve")
    timer = context.create_timer(timeout)
    winner = yield context.task_any([event, timer])
    if winner is event:
        timer.cancel()
        return {"approved": event.result}
    return {"approved": None}


@app.orchestration_trigger(context_name="context")
def failing(context: df.DurableOrchestrationContext):
    yield context.call_activity("fail_activity", "boom")
    return "unreachable"


@app.orchestration_trigger(context_name="context")
def catching(context: df.DurableOrchestrationContext):
    try:
        yield context.call_activity("fail_activity", "caught")
    except Exception as exc:
        return {"caught": str(exc)}


@app.orchestration_trigger(context_name="context")
def counter(context: df.DurableOrchestrationContext):
    n = context.get_input() or 0
    yield context.call_activity("hello", f"round {n}")
    if n < 3:
        context.continue_as_new(n + 1)
        return None
    return n


@app.orchestration_trigger(context_name="context")
def slow_sequence(context: df.DurableOrchestrationContext):
    spec = context.get_input()
    for i in range(spec["n"]):
        yield context.call_activity(record, {"item": i, "sleep": spec.get("sleep", 0), "file": spec["file"]})
    return spec["n"]


@app.orchestration_trigger(context_name="context")
def alias_orch(context: df.DurableOrchestrationContext):
    by_object = yield context.call_activity(greet, "object")  # the SDK sends the raw __name__ "greet"
    by_name = yield context.call_activity("greet_renamed", "name")
    return [by_object, by_name]


# ---------------------------------------------------------------- activities
@app.function_name("greet_renamed")
@app.activity_trigger(input_name="name")
def greet(name: str) -> str:
    return f"Hi {name}"


@app.activity_trigger(input_name="name")
def hello(name: str) -> str:
    return f"Hello {name}"


@app.activity_trigger(input_name="spec")
def record(spec: dict) -> int:
    time.sleep(spec.get("sleep", 0))
    append(spec["file"], str(spec["item"]))
    return 1


@app.activity_trigger(input_name="spec")
def flaky(spec: dict) -> str:
    path = out_dir() / f"flaky-{spec['key']}.txt"
    attempts = int(path.read_text()) + 1 if path.exists() else 1
    path.write_text(str(attempts))
    if attempts < spec["succeed_on"]:
        raise ValueError(f"attempt {attempts} failed")
    return f"succeeded on attempt {attempts}"


@app.activity_trigger(input_name="message")
def fail_activity(message: str) -> str:
    raise ValueError(message)


@app.activity_trigger(input_name="name")
def step_start(name: str) -> int:
    return 0


@app.activity_trigger(input_name="spec")
async def step_poll(spec: dict) -> int:
    return spec["count"] + 1
