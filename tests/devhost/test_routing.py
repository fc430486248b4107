import pytest

from devhost.routing import RouteError, RouteTemplate


def match(template, path):
    return RouteTemplate.compile(template).match(path)


def test_literal_and_parameters():
    assert match("pipelines", "/pipelines") == {}
    assert match("pipelines", "/pipelines/") == {}
    assert match("pipelines", "/pipelines/x") is None
    assert match("runs/{run_id}/steps/{step}/logs", "/runs/r1/steps/train/logs") == {"run_id": "r1", "step": "train"}


def test_optional_and_default():
    assert match("start/{name}/{id?}", "/start/seq") == {"name": "seq"}
    assert match("start/{name}/{id?}", "/start/seq/abc") == {"name": "seq", "id": "abc"}
    assert match("page/{n=1}", "/page") == {"n": "1"}


def test_constraints_and_catch_all():
    assert match("items/{id:int}", "/items/-3") == {"id": "-3"}
    assert match("items/{id:int}", "/items/x") is None
    assert match("files/{*path}", "/files/a/b.txt") == {"path": "a/b.txt"}
    assert match("files/{*path}", "/files") == {}


def test_precedence_literals_first():
    templates = sorted((RouteTemplate.compile(t) for t in ["runs/{id}", "runs/latest", "{*all}"]),
                       key=lambda r: r.precedence)
    assert [t.template for t in templates] == ["runs/latest", "runs/{id}", "{*all}"]


def test_bad_templates():
    with pytest.raises(RouteError):
        RouteTemplate.compile("a/{*rest}/b")
    with pytest.raises(RouteError):
        RouteTemplate.compile("a/{id:nosuch}")
