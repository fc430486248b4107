"""`mlpipe` command line (API.md section 5).

Exit codes scripts can rely on: 0 success (a run Finished), 1 the run Failed or was Canceled,
2 bad input (definition, arguments), 3 the host could not be reached or answered an error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from shared import __version__
from shared.client import DEFAULT_HOST, ApiError, HostUnreachable, PipelineClient, parse_param_assignments
from shared.errors import InvalidRequest, MlpipeError
from shared.local_host import APP_ROOT, ensure_local_host, read_local_key
from shared.progress import RunProgressPrinter
from shared.statuses import RunStatus

EXIT_OK, EXIT_RUN_FAILED, EXIT_BAD_INPUT, EXIT_HOST = 0, 1, 2, 3


def _client(args) -> PipelineClient:
    host = args.host or os.environ.get("MLPIPE_HOST") or DEFAULT_HOST
    key = args.key or os.environ.get("MLPIPE_FUNCTION_KEY") or read_local_key()
    return PipelineClient(host, key)


def _emit(args, value) -> None:
    if getattr(args, "output", "text") == "json":
        print(json.dumps(value, indent=2))
    elif isinstance(value, (dict, list)):
        print(json.dumps(value, indent=2))
    else:
        print(value)


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
                  private=False) -> dict:
    from shared.fingerprint import SourceHasher
    from shared.packaging import build_package
    from shared.settings import get_settings
    from shared.spec import load_definition

    definition, base_dir = load_definition(path)
    hasher = SourceHasher(get_settings().data_dir / "cache" / "stat-cache.sqlite")
    package = build_package(Path(path), definition, base_dir, hasher)
    return client.publish_package(package, name=name, version=version, description=description, private=private)


def cmd_run(args) -> int:
    parameters = parse_param_assignments(args.param)
    client = _client(args)
    with ensure_local_host(client, quiet=args.output == "json") as client:
        pipeline = _publish_file(client, Path(args.file), private=True)
        run = client.submit(pipeline["Id"], args.experiment or pipeline["Name"], parameters,
                            RegenerateOutputs=args.regenerate_outputs, RunSource="CLI")
        return _follow(client, run, args)


def _follow(client: PipelineClient, run: dict, args) -> int:
    printer = None if args.output == "json" else RunProgressPrinter(sys.stdout)
    if printer:
        printer.started(run)
    final = client.wait_for_run(run["Id"], poll_seconds=0.2, on_update=printer.update if printer else None)
    if printer:
        printer.finished(final)
    else:
        print(json.dumps(final, indent=2))
    return EXIT_OK if final["Status"] == RunStatus.FINISHED else EXIT_RUN_FAILED


def cmd_publish(args) -> int:
    client = _client(args)
    pipeline = _publish_file(client, Path(args.file), name=args.name, version=args.version,
                             description=args.description)
    _emit(args, pipeline if args.output == "json" else f"published {pipeline['Name']} as {pipeline['Id']}")
    return EXIT_OK


def cmd_submit(args) -> int:
    client = _client(args)
    run = client.submit(args.pipeline, args.experiment, parse_param_assignments(args.param),
                        RegenerateOutputs=args.regenerate_outputs, RunSource="CLI")
    if args.wait:
        return _follow(client, run, args)
    _emit(args, run if args.output == "json" else run["Id"])
    return EXIT_OK


def cmd_runs(args) -> int:
    client = _client(args)
    if args.runs_command == "list":
        runs = client.list_runs(experiment=args.experiment, status=args.status, pipelineId=args.pipeline, top=args.top)
        if args.output == "json":
            _emit(args, runs)
        else:
            for run in runs:
                print(f"{run['Id']}  {run['Status']:<10} {run.get('ExperimentName') or '':<24} {run.get('CreatedTimeUtc')}")
    elif args.runs_command == "show":
        _emit(args, client.get_run(args.run_id))
    elif args.runs_command == "cancel":
        run = client.cancel_run(args.run_id)
        _emit(args, run if args.output == "json" else f"run {run['Id']} {run['Status']}")
    elif args.runs_command == "logs":
        print(client.get_step_logs(args.run_id, args.step), end="")
    elif args.runs_command == "fingerprint":
        _emit(args, client.get_step_fingerprint(args.run_id, args.step))
    elif args.runs_command == "explain":
        return _explain(client, args)
    return EXIT_OK


def _explain(client: PipelineClient, args) -> int:
    """Which fingerprint ingredient of STEP differs between two runs (API.md section 5)."""
    from shared.fingerprint import diff_ingredients

    step = next(item for item in client.get_run(args.run_id)["Steps"] if item["Name"] == args.step)
    other = args.against or step.get("ReusedFromRunId")
    if not other:
        raise InvalidRequest("--against: name the run to compare with (the step was not reused from one)")
    differences = diff_ingredients(client.get_step_fingerprint(other, args.step),
                                   client.get_step_fingerprint(args.run_id, args.step))
    if args.output == "json":
        _emit(args, {"step": args.step, "run": args.run_id, "against": other, "differences": differences})
    elif differences:
        print(f"{args.step}: {len(differences)} ingredient(s) differ from run {other}:")
        for line in differences:
            print(f"  {line}")
    else:
        print(f"{args.step}: same fingerprint as in run {other} (so it can be reused)")
    return EXIT_OK


def cmd_pipelines(args) -> int:
    client = _client(args)
    if args.pipelines_command == "list":
        pipelines = client.list_pipelines(args.status)
        if args.output == "json":
            _emit(args, pipelines)
        else:
            for pipeline in pipelines:
                print(f"{pipeline['Id']}  {pipeline['Status']:<8} {pipeline['Name']} {pipeline.get('Version') or ''}")
    elif args.pipelines_command == "show":
        _emit(args, client.get_pipeline(args.pipeline_id))
    else:
        _emit(args, client.set_pipeline_enabled(args.pipeline_id, args.pipelines_command == "enable"))
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlpipe", description="Azure-ML-style pipelines on Azure Functions + Durable Functions")
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
    run.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
    run.add_argument("--experiment")
    run.add_argument("--regenerate-outputs", action="store_true")
    _add_host_options(run)
    run.set_defaults(handler=cmd_run)

    publish = commands.add_parser("publish", help="publish a pipeline from FILE")
    publish.add_argument("file")
    publish.add_argument("--name")
    publish.add_argument("--version")
    publish.add_argument("--description")
    _add_host_options(publish)
    publish.set_defaults(handler=cmd_publish)

    submit = commands.add_parser("submit", help="submit a run of a published pipeline")
    submit.add_argument("--pipeline", required=True, metavar="ID")
    submit.add_argument("--experiment", required=True)
    submit.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
    submit.add_argument("--regenerate-outputs", action="store_true")
    submit.add_argument("--wait", action="store_true", help="follow the run; exit 1 if it fails")
    _add_host_options(submit)
    submit.set_defaults(handler=cmd_submit)

    runs = commands.add_parser("runs", help="list and inspect runs")
    runs_commands = runs.add_subparsers(dest="runs_command", required=True)
    runs_list = runs_commands.add_parser("list")
    runs_list.add_argument("--experiment")
    runs_list.add_argument("--status")
    runs_list.add_argument("--pipeline")
    runs_list.add_argument("--top", type=int)
    for name in ("show", "cancel"):
        sub = runs_commands.add_parser(name)
        sub.add_argument("run_id")
    for name in ("logs", "fingerprint", "explain"):
        sub = runs_commands.add_parser(name)
        sub.add_argument("run_id")
        sub.add_argument("step")
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

    datastore = commands.add_parser("datastore", help="upload data to a datastore (uses AzureWebJobsStorage directly)")
    datastore_commands = datastore.add_subparsers(dest="datastore_command", required=True)
    upload = datastore_commands.add_parser("upload")
    upload.add_argument("local")
    upload.add_argument("path", help="destination path on the datastore")
    upload.add_argument("--datastore", default="workspaceblobstore")
    upload.set_defaults(handler=cmd_datastore_upload)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not hasattr(args, "output"):
        args.output = "text"
    started = time.monotonic()
    try:
        return args.handler(args)
    except ApiError as error:
        print(f"mlpipe: {error.api_message or error.message} ({error.status} {error.code})", file=sys.stderr)
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
        return 130


if __name__ == "__main__":
    sys.exit(main())
