"""HEAD wherever GET works: every GET route of the app (walked from its router, plus the
static routes) answers HEAD with the GET's status and headers and no body."""

from __future__ import annotations

import re

import pytest
from falcon import inspect

from recsys_api.head import HeadStreams

#: A value for each path parameter of a route.
PARAMS = {"task_id": "no-such-task", "sha256": "0" * 64, "change_id": "1"}
#: The static routes (not in the router): one file each.
STATIC = ["/docs/assets/swagger-ui.css", "/docs/ui/init.js", "/console/assets/console.js"]
#: Headers that differ between two answers whatever the method.
VOLATILE = {"date", "content-length"}


def get_routes(app) -> list[str]:
    """Every path template with a GET responder of our own."""
    routes = []
    for route in inspect.inspect_routes(app):
        if any(m.method == "GET" and not m.internal for m in route.methods):
            routes.append(route.path)
    return sorted(routes)


def concrete(template: str) -> str:
    return re.sub(r"{(\w+)}", lambda m: PARAMS[m.group(1)], template)


def test_the_walk_finds_every_get_route(harness):
    routes = get_routes(harness.app)

    assert {"/health", "/ready", "/metrics", "/openapi.json", "/docs", "/v1/tasks/{task_id}", "/v1/engine",
            "/v1/engine/files/{sha256}", "/v1/engine/archive", "/v1/workers", "/v1/engines", "/console",
            "/v1/console/state"} <= set(routes)
    assert set(PARAMS) >= {name for r in routes for name in re.findall(r"{(\w+)}", r)}


@pytest.mark.parametrize("engine", [False, True], ids=["no engine", "an engine"])
def test_every_get_route_answers_head_alike_without_a_body(harness, engine):
    if engine:
        harness.install()
    client = harness.client
    paths = [concrete(template) for template in get_routes(harness.app)] + STATIC
    for path in paths:
        got = client.simulate_get(path)
        head = client.simulate_head(path)

        assert head.status_code == got.status_code, path
        assert head.content == b"", path
        assert head.status_code != 405, path
        same = {k: v for k, v in got.headers.items() if k.lower() not in VOLATILE}
        assert {k: v for k, v in head.headers.items() if k.lower() not in VOLATILE} == same, path
        if got.status_code == 200 and path != "/metrics":  # metrics change between two scrapes
            assert head.headers.get("content-length") == str(len(got.content)), path


def test_head_of_the_archive_sends_no_bytes_and_counts_none(harness):
    harness.install()

    head = harness.client.simulate_head("/v1/engine/archive")

    assert head.status_code == 200 and head.content == b""
    assert int(head.headers["content-length"]) > 0
    metrics = harness.client.simulate_get("/metrics").text
    assert 'recsys_api_file_bytes_served_total{route="/v1/engine/archive"}' not in metrics


def test_a_head_answers_stream_is_closed_not_sent():
    class Stream:
        closed = False

        def close(self):
            self.closed = True

    class Req:
        method = "HEAD"

    class Resp:
        stream: object = None

    stream, resp = Stream(), Resp()
    resp.stream = stream

    HeadStreams().process_response(Req(), resp, None, True)

    assert stream.closed and resp.stream is None


def test_other_methods_are_still_refused(harness):
    assert harness.client.simulate_delete("/health").status_code == 405
    assert harness.client.simulate_head("/v1/recommendations").status_code == 405
