"""Small pipelines written on the fly for integration tests, and helpers to publish them."""

from __future__ import annotations

import io
import textwrap
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest
import yaml

from shared.client import ApiError, PipelineClient
from shared.fingerprint import SourceHasher
from shared.packaging import build_package
from shared.spec import load_definition

# A step script: copies every input file into --out, appends its own line, logs a metric,
# optionally sleeps or fails; records each execution in --marker so tests can count runs.
STEP_SCRIPT = textwrap.dedent('''
    import argparse, json, os, pathlib, sys, time
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", required=True)
    parser.add_argument("--input", action="append", default=[])
    parser.add_argument("--out")
    parser.add_argument("--marker")
    parser.add_argument("--sleep", type=float, default=0)
    parser.add_argument("--fail", default="False")
    parser.add_argument("--fail-until", type=int, default=0)  # fail while this is run number < N
    args, _unknown = parser.parse_known_args()  # extra arguments only change the fingerprint
    if args.marker:
        pathlib.Path(args.marker).mkdir(parents=True, exist_ok=True)
        with open(pathlib.Path(args.marker) / (args.name + ".runs"), "a") as handle:
            handle.write("run\\n")
    time.sleep(args.sleep)
    runs = len((pathlib.Path(args.marker) / (args.name + ".runs")).read_text().splitlines()) if args.marker else 1
    if args.fail == "True" or runs < args.fail_until:
        print("step " + args.name + " is failing on purpose", file=sys.stderr)
        sys.exit(3)
    if args.marker:
        (pathlib.Path(args.marker) / (args.name + ".done")).write_text("done")
    text = ""
    for item in args.input:
        path = pathlib.Path(item)
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        text += "".join(p.read_text() for p in files)
    if args.out:
        out = pathlib.Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "data.txt").write_text(text + args.name + "\\n")
    with open(os.environ["MLPIPE_METRICS_FILE"], "a") as metrics:
        metrics.write(json.dumps({"name": "lines", "value": len((text + args.name).splitlines())}) + "\\n")
    print("step " + args.name + " done")
''')


def step(name: str, inputs: dict | None = None, outputs: list | None = None, **extra) -> dict:
    arguments = ["--name", name, "--marker", "{parameters.marker_dir}",
                 "--sleep", "{parameters.sleep_%s}" % name if extra.pop("sleep_param", False) else "0",
                 "--fail", "{parameters.fail_%s}" % name if extra.pop("fail_param", False) else "False"]
    for input_name in inputs or {}:
        arguments += ["--input", "{inputs.%s}" % input_name]
    for output in outputs or []:
        arguments += ["--out", "{outputs.%s}" % output]
    return {"name": name, "type": "python", "source_directory": "src", "script_name": "step.py",
            "arguments": arguments, "inputs": inputs or {}, "outputs": outputs or [], **extra}


def write_pipeline(folder: Path, definition: dict, script: str = STEP_SCRIPT) -> Path:
    (folder / "src").mkdir(parents=True, exist_ok=True)
    (folder / "src" / "step.py").write_text(script)
    path = folder / "pipeline.yaml"
    path.write_text(yaml.safe_dump(definition, sort_keys=False))
    return path


def publish(client: PipelineClient, path: Path, **options) -> dict:
    definition, base_dir = load_definition(path)
    package = build_package(path, definition, base_dir, SourceHasher(None))
    return client.publish_package(package, **options)


def publish_unchecked(client: PipelineClient, folder: Path, **options) -> dict:
    """Zip a folder as it is (no local validation) so the host's own checks are what is tested."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(folder).as_posix())
    return client.publish_package(buffer.getvalue(), **options)


def run_count(marker_dir: Path, step_name: str) -> int:
    path = Path(marker_dir) / f"{step_name}.runs"
    return len(path.read_text().splitlines()) if path.exists() else 0


def raw_request(host, method, path, body=None, headers=None) -> tuple[int, bytes]:
    """(status, body) of a request sent as it is, without the client (to test keys and raw bodies)."""
    request = urllib.request.Request(host.url + path, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def error_of(call) -> ApiError:
    """The ApiError `call()` raises (the test fails if it raises none)."""
    with pytest.raises(ApiError) as caught:
        call()
    return caught.value
