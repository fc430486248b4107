"""The pure parts of the trigger path: message parsing, deterministic run ids, change windows, event ids."""

from __future__ import annotations

import base64
import datetime as dt
import json

import pytest

from shared import events
from shared.queues import decode_message_text
from shared.schedules import common_folder, path_is_under
from shared.submissions import PoisonMessage, deterministic_run_id, parse_submission, poison_body


def test_base64_and_plain_json_both_decode():
    body = json.dumps({"PipelineId": "p", "ExperimentName": "e"})
    assert decode_message_text(base64.b64encode(body.encode()).decode()) == body
    assert decode_message_text(body) == body
    assert decode_message_text(body.encode()) == body
    assert decode_message_text("not base64 at all!") == "not base64 at all!"


@pytest.mark.parametrize("raw, words", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "JSON object"),
    (json.dumps({"ExperimentName": "e"}), "exactly one of PipelineId and EndpointName"),
    (json.dumps({"PipelineId": "p", "EndpointName": "e", "ExperimentName": "e"}), "exactly one"),
    (json.dumps({"PipelineId": 5, "ExperimentName": "e"}), "PipelineId: expected a string"),
    (json.dumps({"PipelineId": "p", "MessageId": ""}), "MessageId"),
])
def test_messages_that_can_never_succeed(raw, words):
    with pytest.raises(PoisonMessage) as caught:
        parse_submission(raw)
    assert words in caught.value.message


def test_poison_body_keeps_the_original_text():
    assert json.loads(poison_body("bad", "{x")) == {"reason": "bad", "message": "{x"}


def test_run_ids_are_deterministic_and_look_like_run_ids():
    due = dt.datetime(2026, 11, 23, 18, 0, tzinfo=dt.timezone.utc)
    first = deterministic_run_id("sched", "nightly", due)
    assert first == deterministic_run_id("sched", "nightly", due)
    assert first.startswith("mlpipe_20261123180000_") and len(first) == len("mlpipe_20261123180000_") + 8
    assert first != deterministic_run_id("sched", "nightly", due + dt.timedelta(minutes=1))
    assert first != deterministic_run_id("sched", "other", due)
    message = deterministic_run_id("msg", "pipeline:p\nm-1")
    assert message == deterministic_run_id("msg", "pipeline:p\nm-1") and message.startswith("mlpipe_msg_")
    assert message != deterministic_run_id("msg", "endpoint:p\nm-1")


def test_change_window_path_is_the_blob_or_the_deepest_common_folder():
    assert common_folder(["a/b/c.csv"]) == "a/b/c.csv"
    assert common_folder(["a/b/c.csv", "a/b/c.csv"]) == "a/b/c.csv"
    assert common_folder(["a/b/1.csv", "a/b/2.csv"]) == "a/b"
    assert common_folder(["a/b/x/1.csv", "a/b/y/2.csv", "a/b/3.csv"]) == "a/b"
    assert common_folder(["a/1.csv", "z/2.csv"]) == ""
    assert path_is_under("iris/incoming/x.csv", "iris/incoming")
    assert path_is_under("iris/incoming/x.csv", "iris/incoming/")
    assert not path_is_under("iris/incoming-old/x.csv", "iris/incoming")


def test_event_ids_are_stable_per_event():
    a = events.cloud_event(events.STEP_STARTED, "r", {"step": "s"}, about="s/1")
    b = events.cloud_event(events.STEP_STARTED, "r", {"step": "s"}, about="s/1")
    c = events.cloud_event(events.STEP_STARTED, "r", {"step": "s"}, about="s/2")
    assert a["id"] == b["id"] != c["id"]
    assert a["specversion"] == "1.0" and a["subject"] == "r" and a["type"] == "mlpipe.StepStarted"
    with pytest.raises(ValueError):
        events.cloud_event("mlpipe.Nope", "r", {})
