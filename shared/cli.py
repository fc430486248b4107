"""`mlpipe` command line (API.md section 5).

Text output is rich tables (and a live step table while following a run on a terminal);
`--output json` prints the API's JSON for scripts.

Exit codes scripts can rely on:
  0  success (a followed run Finished)
  1  a followed run Failed or was Canceled
  2  bad input (definition, arguments, a 400/413/415 from the host)
  3  the host could not be reached or failed (5xx)
  4  not found (404: unknown pipeline, endpoint, run, step)
  5  conflict (409: pipeline or endpoint disabled, endpoint name taken)
  6  unauthorized (401: missing or wrong function key)
  130 interrupted
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from shared import __version__
from shared.client import DEFAULT_HOST, ApiError, HostUnreachable, PipelineClient, parse_param_assignments, to_plain
from shared.errors import InvalidRequest, MlpipeError
from shared.local_host import APP_ROOT, ensure_local_host, read_local_key
from shared.progress import LiveRunProgress, RunProgressPrinter, steps_table
from shared.statuses import RunStatus

EXIT_OK, EXIT_RUN_FAILED, EXIT_BAD_INPUT, EXIT_HOST = 0, 1, 2, 3
EXIT_NOT_FOUND, EXIT_CONFLICT, EXIT_UNAUTHORIZED, EXIT_INTERRUPTED = 4, 5, 6, 130
_EXIT_BY_STATUS = {401: EXIT_UNAUTHORIZED, 404: EXIT_NOT_FOUND, 409: EXIT_CONFLICT}


def _console():
    from rich.console import Console

    return Console(highlight=False, soft_wrap=False)


def _client(args) -> PipelineClient:
    host = args.host or os.environ.get("MLPIPE_HOST") or DEFAULT_HOST
    key = args.key or os.environ.get("MLPIPE_FUNCTION_KEY") or read_local_key()
    return PipelineClient(host, key)


def _json(value) -> None:
    print(json.dumps(to_plain(value), indent=2))


def _table(rows: list, columns: list[tuple[str, str]], title: str | None = None) -> None:
    """Rows (API objects) as a rich table; columns are (header, field)."""
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for header, _field in columns:
        table.add_column(header, overflow="fold")
    for row in rows:
        table.add_row(*[_cell(row.get(field)) for _header, field in columns])
    _console().print(table)


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)) or hasattr(value, "as_dict"):
        return json.dumps(to_plain(value), separators=(", ", ": "))
    return str(value)


def _details(item, fields: list[str], title: str) -> None:
    from rich.table import Table

    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for name in fields:
        if name in item:
            table.add_row(name, _cell(item.get(name)))
    _console().print(table)


def _show(args, value, text) -> None:
    """JSON for --output json, else the `text` rendering (a callable or a string)."""
    if args.output == "json":
        _json(value)
    elif callable(text):
        text()
    else:
        print(text)


# --- commands ---------------------------------------------------------------------------------
def cmd_serve(args) -> int:
    from devhost import main as devhost_main  # the local host is a development tool, imported lazily

    argv = ["--port", str(args.port), "--app-root", str(args.app_root)]
    return devhost_main(argv) or 0


def cmd_validate(args) -> int:
    from shared.spec import load_definition

    definition, _ = load_definition(args.file)
    print(f"{args.file}: valid pipeline '{definition.name}' with {len(definition.steps)} steps")
    return EXIT_OK


def cmd_schema(args) -> int:
    from shared.spec import definition_json_schema

    print(json.dumps(definition_json_schema(), indent=2))
    return EXIT_OK


def _publish_file(client: PipelineClient, path: Path, *, name=None, version=None, description=None,
                  private=False):
    from shared.fingerprint import SourceHasher
    from shared.packaging import build_package
    from shared.settings import get_settings
    from shared.spec import load_definition

    definition, base_dir = load_definition(path)
    hasher = SourceHasher(get_settings().data_dir / "cache" / "stat-cache.sqlite")
    package = build_package(Path(path), definition, base_dir, hasher)
    return client.publish_package(package, name=name, version=version, description=description, private=private)


def _submit_fields(args) -> dict:
    fields = {"RunSource": "CLI", "RegenerateOutputs": bool(getattr(args, "regenerate_outputs", False))}
    if getattr(args, "continue_on_step_failure", False):
        fields["ContinueOnStepFailure"] = True
    tags = _parse_tags(getattr(args, "tag", None) or [])
    if tags:
        fields["Tags"] = tags
    if getattr(args, "description", None):
        fields["Description"] = args.description
    return fields


def _parse_tags(pairs: list[str]) -> dict:
    tags = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidRequest(f"--tag {pair!r}: expected KEY=VALUE")
        tags[key] = value
    return tags


def cmd_run(args) -> int:
    parameters = parse_param_assignments(args.param)
    client = _client(args)
    with ensure_local_host(client, quiet=args.output == "json") as client:
        pipeline = _publish_file(client, Path(args.file), private=True)
        run = client.submit(pipeline["Id"], args.experiment or pipeline["Name"], parameters, **_submit_fields(args))
        return _follow(client, run, args)


def _follow(client: PipelineClient, run, args) -> int:
    """Follow the run to its end with live progress (or print its final JSON); 0 if it Finished."""
    printer = None
    if args.output != "json":
        console = _console()
        printer = LiveRunProgress(console) if console.is_terminal else RunProgressPrinter(sys.stdout)
    if printer:
        printer.started(run)
    final = client.wait_for_run(run["Id"], poll_seconds=0.2, on_update=printer.update if printer else None)
    if printer:
        printer.finished(final)
    else:
        _json(final)
    return EXIT_OK if final["Status"] == RunStatus.FINISHED else EXIT_RUN_FAILED


def cmd_publish(args) -> int:
    client = _client(args)
    pipeline = _publish_file(client, Path(args.file), name=args.name, version=args.version,
                             description=args.description)
    _show(args, pipeline, f"published {pipeline['Name']} as {pipeline['Id']}")
    return EXIT_OK


def cmd_submit(args) -> int:
    if bool(args.pipeline) == bool(args.endpoint):
        raise InvalidRequest("submit: give exactly one of --pipeline ID or --endpoint NAME")
    if args.version is not None and not args.endpoint:
        raise InvalidRequest("--version: only with --endpoint (a pipeline id is already one version)")
    client = _client(args)
    parameters = parse_param_assignments(args.param)
    if args.endpoint:
        run = client.submit_endpoint(args.endpoint, args.experiment, parameters, pipeline_version=args.version,
                                     **_submit_fields(args))
    else:
        run = client.submit(args.pipeline, args.experiment, parameters, **_submit_fields(args))
    if args.wait:
        return _follow(client, run, args)
    _show(args, run, run["Id"])
    return EXIT_OK


_RUN_COLUMNS = [("Id", "Id"), ("Status", "Status"), ("Experiment", "ExperimentName"),
                ("Endpoint", "EndpointName"), ("Created (UTC)", "CreatedTimeUtc"), ("Tags", "Tags")]
_RUN_FIELDS = ["Id", "Status", "ExperimentName", "PipelineId", "EndpointName", "PipelineVersion", "RunSource",
               "ParameterAssignments", "DataPathAssignments", "Tags", "CreatedTimeUtc", "StartTimeUtc",
               "EndTimeUtc", "Error"]


def _print_run(run) -> None:
    _details(run, _RUN_FIELDS, f"run {run['Id']}")
    _console().print(steps_table(run))


def cmd_runs(args) -> int:
    client = _client(args)
    command = args.runs_command
    if command == "list":
        runs = client.list_runs(experiment=args.experiment, status=args.status, pipeline_id=args.pipeline,
                                endpoint_name=args.endpoint, tag=args.tag, top=args.top)
        _show(args, runs, lambda: _table(runs, _RUN_COLUMNS))
    elif command == "show":
        run = client.get_run(args.run_id)
        _show(args, run, lambda: _print_run(run))
    elif command == "cancel":
        run = client.cancel_run(args.run_id)
        if args.wait:
            return _follow(client, run, args)
        _show(args, run, f"run {run['Id']} {run['Status']}")
    elif command == "tag":
        tags = _parse_tags(args.tags)
        tags.update({key: None for key in args.remove})
        if not tags:
            raise InvalidRequest("tag: give KEY=VALUE pairs and/or --remove KEY")
        run = client.update_run_tags(args.run_id, tags)
        _show(args, run, lambda: _details(run, ["Id", "Tags"], f"run {run['Id']}"))
    elif command == "logs":
        print(client.get_step_logs(args.run_id, args.step, args.attempt), end="")
    elif command == "fingerprint":
        _json(client.get_step_fingerprint(args.run_id, args.step))
    elif command == "explain":
        return _explain(client, args)
    return EXIT_OK


def _explain(client: PipelineClient, args) -> int:
    """Which fingerprint ingredient of STEP differs between two runs (API.md section 5)."""
    from shared.fingerprint import diff_ingredients

    steps = [item for item in client.get_run(args.run_id)["Steps"] if item["Name"] == args.step]
    if not steps:
        raise InvalidRequest(f"step: run {args.run_id} has no step '{args.step}'")
    other = args.against or steps[0].get("ReusedFromRunId")
    if not other:
        raise InvalidRequest("--against: name the run to compare with (the step was not reused from one)")
    differences = diff_ingredients(client.get_step_fingerprint(other, args.step),
                                   client.get_step_fingerprint(args.run_id, args.step))
    if args.output == "json":
        _json({"step": args.step, "run": args.run_id, "against": other, "differences": differences})
    elif differences:
        print(f"{args.step}: {len(differences)} ingredient(s) differ from run {other}:")
        for line in differences:
            print(f"  {line}")
    else:
        print(f"{args.step}: same fingerprint as in run {other} (so it can be reused)")
    return EXIT_OK


_PIPELINE_COLUMNS = [("Id", "Id"), ("Name", "Name"), ("Version", "Version"), ("Status", "Status"),
                     ("Created (UTC)", "CreatedTimeUtc")]
_PIPELINE_FIELDS = ["Id", "Name", "Description", "Version", "Status", "Parameters", "Endpoint", "CreatedTimeUtc"]


def cmd_pipelines(args) -> int:
    client = _client(args)
    if args.pipelines_command == "list":
        pipelines = client.list_pipelines(args.status)
        _show(args, pipelines, lambda: _table(pipelines, _PIPELINE_COLUMNS))
        return EXIT_OK
    if args.pipelines_command == "show":
        pipeline = client.get_pipeline(args.pipeline_id)
    else:
        pipeline = client.set_pipeline_enabled(args.pipeline_id, args.pipelines_command == "enable")
    _show(args, pipeline, lambda: _details(pipeline, _PIPELINE_FIELDS, f"pipeline {pipeline['Name']}"))
    return EXIT_OK


_ENDPOINT_FIELDS = ["Name", "Description", "Status", "DefaultVersion", "Endpoint", "CreatedTimeUtc"]


def _print_endpoint(endpoint) -> None:
    _details(endpoint, _ENDPOINT_FIELDS, f"endpoint {endpoint['Name']}")
    rows = [{"Version": v["Version"], "PipelineId": v["PipelineId"],
             "Default": "yes" if v["Version"] == endpoint["DefaultVersion"] else ""} for v in endpoint["Versions"]]
    _table(rows, [("Version", "Version"), ("Pipeline", "PipelineId"), ("Default", "Default")])


def _endpoint_rows(endpoints) -> list[dict]:
    return [{"Name": e["Name"], "Status": e["Status"], "DefaultVersion": e["DefaultVersion"],
             "Pipeline": next((v["PipelineId"] for v in e["Versions"] if v["Version"] == e["DefaultVersion"]), ""),
             "Versions": str(len(e["Versions"]))} for e in endpoints]


def cmd_endpoints(args) -> int:
    client = _client(args)
    command = args.endpoints_command
    if command == "list":
        endpoints = client.list_endpoints(args.status)
        _show(args, endpoints, lambda: _table(_endpoint_rows(endpoints), [
            ("Name", "Name"), ("Status", "Status"), ("Default", "DefaultVersion"),
            ("Default pipeline", "Pipeline"), ("Versions", "Versions")]))
        return EXIT_OK
    if command == "submit":
        run = client.submit_endpoint(args.name, args.experiment, parse_param_assignments(args.param),
                                     pipeline_version=args.version, **_submit_fields(args))
        if args.wait:
            return _follow(client, run, args)
        _show(args, run, run["Id"])
        return EXIT_OK
    if command == "create":
        endpoint = client.create_endpoint(args.name, args.pipeline, args.description)
    elif command == "show":
        endpoint = client.get_endpoint(args.name)
    elif command == "add-version":
        endpoint = client.add_endpoint_version(args.name, args.pipeline)
    elif command == "set-default":
        endpoint = client.set_endpoint_default(args.name, args.version)
    else:
        endpoint = client.set_endpoint_enabled(args.name, command == "enable")
    _show(args, endpoint, lambda: _print_endpoint(endpoint))
    return EXIT_OK


_SCHEDULE_FIELDS = ["Name", "Kind", "Status", "PipelineId", "EndpointName", "ExperimentName", "Cron", "TimeZone",
                    "LastRunId", "LastRunTimeUtc", "NextRunTimeUtc", "CreatedTimeUtc"]


def _schedule_body(args) -> dict:
    body = {"name": args.name, "experimentName": args.experiment,
            "parameterAssignments": parse_param_assignments(args.param)}
    body["pipelineId" if args.pipeline else "endpointName"] = args.pipeline or args.endpoint
    if args.cron:
        body["cron"] = args.cron
        if args.time_zone:
            body["timeZone"] = args.time_zone
    elif args.frequency:
        recurrence = {"frequency": args.frequency, "interval": args.interval}
        for key, value in (("startTime", args.start_time), ("timeZone", args.time_zone)):
            if value:
                recurrence[key] = value
        for key, value in (("hours", args.hours), ("minutes", args.minutes)):
            if value:
                recurrence[key] = [int(v) for v in value.split(",")]
        if args.week_days:
            recurrence["weekDays"] = args.week_days.split(",")
        body["recurrence"] = recurrence
    else:
        body["datastore"] = {"name": args.datastore, "pathOnDatastore": args.watch,
                             "dataPathParameterName": args.data_path_parameter, "debounceSeconds": args.debounce}
    return body


def cmd_schedules(args) -> int:
    client = _client(args)
    command = args.schedules_command
    if command == "list":
        schedules = client.list_schedules(args.status)
        _show(args, schedules, lambda: _table(schedules, [
            ("Name", "Name"), ("Kind", "Kind"), ("Status", "Status"), ("Last run", "LastRunId"),
            ("Next due", "NextRunTimeUtc")]))
        return EXIT_OK
    if command == "delete":
        client.delete_schedule(args.name)
        _show(args, {"deleted": args.name}, f"schedule {args.name} deleted")
        return EXIT_OK
    if command == "create":
        schedule = client.create_schedule(_schedule_body(args))
    elif command == "show":
        schedule = client.get_schedule(args.name)
    else:
        schedule = client.set_schedule_enabled(args.name, command == "enable")
    _show(args, schedule, lambda: _details(schedule, _SCHEDULE_FIELDS, f"schedule {schedule['Name']}"))
    return EXIT_OK


def cmd_datastore_upload(args) -> int:
    from shared.datastore import get_datastore

    store = get_datastore(args.datastore)
    local = Path(args.local)
    if local.is_dir():
        files = store.upload_folder(local, args.path)
        print(f"uploaded {len(files)} files to {args.datastore}/{args.path}")
    elif local.is_file():
        store.upload_file(local, args.path)
        print(f"uploaded {local} to {args.datastore}/{args.path}")
    else:
        raise InvalidRequest(f"LOCAL {args.local!r}: no such file or folder")
    return EXIT_OK


# --- parser ------------------------------------------------------------------------------------
def _add_host_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help=f"host URL (env MLPIPE_HOST, default {DEFAULT_HOST})")
    parser.add_argument("--key", help="function key (env MLPIPE_FUNCTION_KEY, else the local host's key file)")
    parser.add_argument("--output", choices=["text", "json"], default="text")


def _add_submit_options(parser: argparse.ArgumentParser, experiment_required: bool = True) -> None:
    parser.add_argument("--experiment", required=experiment_required)
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE", help="a run tag")
    parser.add_argument("--regenerate-outputs", action="store_true")
    parser.add_argument("--continue-on-step-failure", action="store_true")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlpipe", description="Azure-ML-style pipelines on Azure Functions + "
                                                               "Durable Functions")
    parser.add_argument("--version", action="version", version=f"mlpipe {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the local Functions + Durable host (starts Azurite when needed)")
    serve.add_argument("--port", type=int, default=7071)
    serve.add_argument("--app-root", type=Path, default=APP_ROOT)
    serve.set_defaults(handler=cmd_serve)

    validate = commands.add_parser("validate", help="check a pipeline definition")
    validate.add_argument("file")
    validate.set_defaults(handler=cmd_validate)

    schema = commands.add_parser("schema", help="print the JSON Schema of pipeline definitions")
    schema.set_defaults(handler=cmd_schema)

    run = commands.add_parser("run", help="publish a private pipeline from FILE, submit it and follow it")
    run.add_argument("file")
    _add_submit_options(run, experiment_required=False)
    _add_host_options(run)
    run.set_defaults(handler=cmd_run)

    publish = commands.add_parser("publish", help="publish a pipeline from FILE")
    publish.add_argument("file")
    publish.add_argument("--name")
    publish.add_argument("--version")
    publish.add_argument("--description")
    _add_host_options(publish)
    publish.set_defaults(handler=cmd_publish)

    submit = commands.add_parser("submit", help="submit a run of a published pipeline or a pipeline endpoint")
    submit.add_argument("--pipeline", metavar="ID")
    submit.add_argument("--endpoint", metavar="NAME")
    submit.add_argument("--version", metavar="N", help="endpoint version (default: the endpoint's default)")
    _add_submit_options(submit)
    submit.add_argument("--wait", action="store_true", help="follow the run; exit 1 if it fails")
    _add_host_options(submit)
    submit.set_defaults(handler=cmd_submit)

    runs = commands.add_parser("runs", help="list, inspect, tag and cancel runs")
    runs_commands = runs.add_subparsers(dest="runs_command", required=True)
    runs_list = runs_commands.add_parser("list")
    runs_list.add_argument("--experiment")
    runs_list.add_argument("--status")
    runs_list.add_argument("--pipeline", metavar="ID")
    runs_list.add_argument("--endpoint", metavar="NAME")
    runs_list.add_argument("--tag", metavar="KEY[:VALUE]")
    runs_list.add_argument("--top", type=int)
    runs_commands.add_parser("show").add_argument("run_id")
    cancel = runs_commands.add_parser("cancel")
    cancel.add_argument("run_id")
    cancel.add_argument("--wait", action="store_true", help="follow the run until it is Canceled")
    tag = runs_commands.add_parser("tag", help="add or change tags (KEY=VALUE), remove with --remove KEY")
    tag.add_argument("run_id")
    tag.add_argument("tags", nargs="*", metavar="KEY=VALUE")
    tag.add_argument("--remove", action="append", default=[], metavar="KEY")
    for name in ("logs", "fingerprint", "explain"):
        sub = runs_commands.add_parser(name)
        sub.add_argument("run_id")
        sub.add_argument("step")
    runs_commands.choices["logs"].add_argument("--attempt", type=int, help="an earlier, failed attempt's log")
    runs_commands.choices["explain"].add_argument(
        "--against", metavar="RUN_ID", help="the run to compare with (default: the run it was reused from)")
    for sub in runs_commands.choices.values():
        _add_host_options(sub)
    runs.set_defaults(handler=cmd_runs)

    pipelines = commands.add_parser("pipelines", help="list, show, disable and enable published pipelines")
    pipelines_commands = pipelines.add_subparsers(dest="pipelines_command", required=True)
    pipelines_list = pipelines_commands.add_parser("list")
    pipelines_list.add_argument("--status", default="Active", choices=["Active", "Disabled", "All"])
    for name in ("show", "disable", "enable"):
        pipelines_commands.add_parser(name).add_argument("pipeline_id")
    for sub in pipelines_commands.choices.values():
        _add_host_options(sub)
    pipelines.set_defaults(handler=cmd_pipelines)

    endpoints = commands.add_parser("endpoints", help="pipeline endpoints: versions of pipelines behind one name")
    endpoints_commands = endpoints.add_subparsers(dest="endpoints_command", required=True)
    create = endpoints_commands.add_parser("create", help="create NAME with --pipeline as version 0 (the default)")
    create.add_argument("name")
    create.add_argument("--pipeline", required=True, metavar="ID")
    create.add_argument("--description")
    endpoints_list = endpoints_commands.add_parser("list")
    endpoints_list.add_argument("--status", default="Active", choices=["Active", "Disabled", "All"])
    for name in ("show", "disable", "enable"):
        endpoints_commands.add_parser(name).add_argument("name")
    add_version = endpoints_commands.add_parser("add-version", help="add --pipeline as the next version")
    add_version.add_argument("name")
    add_version.add_argument("--pipeline", required=True, metavar="ID")
    set_default = endpoints_commands.add_parser("set-default", help="make VERSION the default")
    set_default.add_argument("name")
    set_default.add_argument("version")
    endpoint_submit = endpoints_commands.add_parser("submit", help="submit a run of the default or --version")
    endpoint_submit.add_argument("name")
    endpoint_submit.add_argument("--version", metavar="N")
    _add_submit_options(endpoint_submit)
    endpoint_submit.add_argument("--wait", action="store_true", help="follow the run; exit 1 if it fails")
    for sub in endpoints_commands.choices.values():
        _add_host_options(sub)
    endpoints.set_defaults(handler=cmd_endpoints)

    schedules = commands.add_parser("schedules", help="run a pipeline or endpoint on a recurrence, a cron or new data")
    schedules_commands = schedules.add_subparsers(dest="schedules_command", required=True)
    schedule_create = schedules_commands.add_parser(
        "create",
        help="NAME (--pipeline ID | --endpoint NAME) --experiment NAME and one of --cron, --frequency, --watch")
    schedule_create.add_argument("name")
    target = schedule_create.add_mutually_exclusive_group(required=True)
    target.add_argument("--pipeline", metavar="ID")
    target.add_argument("--endpoint", metavar="NAME", help="runs the endpoint's default version at fire time")
    schedule_create.add_argument("--experiment", required=True)
    schedule_create.add_argument("--param", action="append", default=[], metavar="K=V")
    when = schedule_create.add_mutually_exclusive_group(required=True)
    when.add_argument("--cron", metavar="EXPR", help="six-field NCRONTAB, e.g. '0 30 9 * * 1-5'")
    when.add_argument("--frequency", choices=["Minute", "Hour", "Day", "Week", "Month"])
    when.add_argument("--watch", metavar="PATH", help="a datastore folder: uploads below it start a run")
    schedule_create.add_argument("--interval", type=int, default=1)
    schedule_create.add_argument("--start-time")
    schedule_create.add_argument("--time-zone")
    schedule_create.add_argument("--hours", help="comma-separated, Day/Week only")
    schedule_create.add_argument("--minutes", help="comma-separated, Day/Week only")
    schedule_create.add_argument("--week-days", help="comma-separated, e.g. Monday,Friday (Week only)")
    schedule_create.add_argument("--datastore", default="workspaceblobstore")
    schedule_create.add_argument("--data-path-parameter", metavar="NAME", help="gets the changed path")
    schedule_create.add_argument("--debounce", type=float, default=30.0, metavar="SECONDS")
    schedules_list = schedules_commands.add_parser("list")
    schedules_list.add_argument("--status", default="All", choices=["Active", "Disabled", "All"])
    for name in ("show", "disable", "enable", "delete"):
        schedules_commands.add_parser(name).add_argument("name")
    for sub in schedules_commands.choices.values():
        _add_host_options(sub)
    schedules.set_defaults(handler=cmd_schedules)

    datastore = commands.add_parser("datastore", help="upload data to a datastore (uses AzureWebJobsStorage directly)")
    datastore_commands = datastore.add_subparsers(dest="datastore_command", required=True)
    upload = datastore_commands.add_parser("upload")
    upload.add_argument("local")
    upload.add_argument("path", help="destination path on the datastore")
    upload.add_argument("--datastore", default="workspaceblobstore")
    upload.set_defaults(handler=cmd_datastore_upload)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse: 2 for bad arguments (as EXIT_BAD_INPUT), 0 for --help
        return int(exit_.code or 0)
    if not hasattr(args, "output"):
        args.output = "text"
    started = time.monotonic()
    try:
        return args.handler(args)
    except ApiError as error:
        print(f"mlpipe: {error.api_message or error.message} ({error.status} {error.code})", file=sys.stderr)
        if error.status in _EXIT_BY_STATUS:
            return _EXIT_BY_STATUS[error.status]
        return EXIT_BAD_INPUT if 400 <= error.status < 500 else EXIT_HOST
    except HostUnreachable as error:
        print(f"mlpipe: {error.message}", file=sys.stderr)
        return EXIT_HOST
    except InvalidRequest as error:
        print(f"mlpipe: {error.message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except MlpipeError as error:
        print(f"mlpipe: {error.message}", file=sys.stderr)
        return EXIT_HOST
    except KeyboardInterrupt:
        print(f"mlpipe: interrupted after {time.monotonic() - started:.1f}s", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
