"""GET /api/openapi.json describes every route, and schemathesis finds no 5xx and no response off the schema.

The schemathesis run is bounded (a few examples per operation, no shrinking, no example
database) so it takes seconds, not minutes.
"""

from __future__ import annotations

import json
import os
import urllib.request

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from itest_pipelines import publish, step, write_pipeline
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from shared.client import PipelineClient
from shared.openapi import OPERATIONS

pytestmark = pytest.mark.integration

MAX_EXAMPLES = {GenerationMode.POSITIVE: 6, GenerationMode.NEGATIVE: 4}  # per operation and id variant


def _registered_routes() -> set[tuple[str, str]]:
    import function_app

    routes = set()
    for function in function_app.app.get_functions():
        trigger = function.get_trigger()
        if getattr(trigger, "type", None) != "httpTrigger":
            continue
        for method in trigger.methods or []:
            routes.add((str(getattr(method, "value", method)).lower(), "/" + trigger.route))
    return routes


def test_every_http_route_is_in_the_document():
    documented = {(op.method, op.path) for op in OPERATIONS}
    assert _registered_routes() == documented


def test_document_is_served_without_a_key_and_is_openapi_31(host):
    with urllib.request.urlopen(host.url + "/api/openapi.json", timeout=30) as response:
        assert response.status == 200
        document = json.loads(response.read())
    assert document["openapi"].startswith("3.1")
    assert document["servers"] == [{"url": host.url + "/api"}]
    submit = document["paths"]["/endpoints/{endpoint_name}/submit"]["post"]
    assert submit["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("EndpointSubmitRequest")
    assert set(submit["responses"]) >= {"202", "400", "401", "404", "409"}
    run_schema = document["components"]["schemas"]["Run"]
    assert {"Id", "Status", "EndpointName", "Steps", "Tags"} <= set(run_schema["properties"])
    assert document["paths"]["/health"]["get"]["security"] == []


@pytest.fixture(scope="module")
def existing(host, tmp_path_factory) -> dict[str, str]:
    """Real objects, so generated requests also reach the success paths (and real bodies get checked)."""
    client = PipelineClient(host.url, host.key)
    folder = tmp_path_factory.mktemp("openapi")
    definition = {"name": "openapi", "parameters": {"marker_dir": str(folder / "m")}, "steps": [step("only")]}
    pipeline = publish(client, write_pipeline(folder / "p", definition))
    name = f"openapi-{os.urandom(3).hex()}"
    client.create_endpoint(name, pipeline["Id"])
    run = client.wait_for_run(client.submit(pipeline["Id"], "openapi", Tags={"a": "b"})["Id"], timeout=120)
    schedules = [item["Name"] for item in client.request("GET", "/api/schedules").get("value", [])] \
        if any(op.path.startswith("/schedules") for op in OPERATIONS) else []
    return {"pipeline_id": pipeline["Id"], "endpoint_name": name, "run_id": run["Id"], "step": "only",
            **({"schedule_name": schedules[0]} if schedules else {})}


def _operations(host):
    schema = schemathesis.openapi.from_url(host.url + "/api/openapi.json")
    return [result.ok() for result in schema.get_all_operations()]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"])
def test_api_conforms_to_its_schema(host, existing, mode):
    """Every operation, a few generated requests each (valid ones, then ones that break the schema),
    with generated path parameters and again with the ids of real objects: no 5xx, and status,
    content type and body as documented."""
    checks = [not_a_server_error, response_schema_conformance, status_code_conformance, content_type_conformance]
    failures, calls = [], []
    operations = _operations(host)
    assert len(operations) >= len(OPERATIONS) - 1  # schemathesis may leave out its own schema route
    for operation in operations:
        names = [p.name for p in operation.path_parameters]
        variants = [None]
        if names and all(name in existing for name in names):
            variants.append({name: existing[name] for name in names})
        for path_parameters in variants:
            @settings(max_examples=MAX_EXAMPLES[mode], deadline=None, database=None, derandomize=True,
                      phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
            @given(case=operation.as_strategy(generation_mode=mode, path_parameters=path_parameters))
            def exercise(case):
                calls.append(case.operation.label)
                case.call_and_validate(headers=host.headers, timeout=30, checks=checks)

            try:
                exercise()
            except Unsatisfiable:  # nothing here can be made invalid (no body, no constrained parameter)
                continue
            except Exception as error:  # noqa: BLE001 - collect every operation's failure, then report them all
                failures.append(f"{operation.method.upper()} {operation.path} {path_parameters or ''}: {error}")
    assert not failures, "\n\n".join(failures)
    if mode is GenerationMode.POSITIVE:
        assert len(set(calls)) == len(operations) and len(calls) >= 3 * len(operations)
    else:
        assert len(set(calls)) >= len(operations) // 2
