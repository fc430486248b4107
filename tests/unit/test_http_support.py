"""The one place HTTP errors are mapped: JSON body limits and messages that name the field."""

from __future__ import annotations

import asyncio
import json

import azure.functions as func
import pytest

from functions.http_support import MAX_JSON_BYTES, api_handler, read_json
from shared.errors import InvalidRequest, PayloadTooLarge


def _request(body: bytes) -> func.HttpRequest:
    return func.HttpRequest(method="POST", url="http://h/api/x", headers={"content-type": "application/json"},
                            params={}, route_params={}, body=body)


def test_json_over_the_limit_is_413():
    with pytest.raises(PayloadTooLarge) as caught:
        read_json(_request(b" " * (MAX_JSON_BYTES + 1)))
    assert "request body" in caught.value.message


@pytest.mark.parametrize("body, words", [(b"", "empty"), (b"{nope", "JSON"), (b"[1]", "list")])
def test_bad_json_names_the_body(body, words):
    with pytest.raises(InvalidRequest) as caught:
        read_json(_request(body))
    assert caught.value.message.startswith("request body:") and words in caught.value.message


def test_handler_maps_errors_to_json():
    @api_handler
    async def handler(req):
        read_json(req)

    response = asyncio.run(handler(_request(b" " * (MAX_JSON_BYTES + 1))))
    assert response.status_code == 413
    assert json.loads(response.get_body())["error"]["code"] == "PayloadTooLarge"
