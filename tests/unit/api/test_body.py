"""JSON bodies: read by stream with or without Content-Length (chunked), strict UTF-8 and strict JSON."""

from __future__ import annotations

import codecs
import io
import json

import falcon.testing
import pytest

TEXT = "Neural networks classify images."
JSON = {"Content-Type": "application/json"}


class CountingStream(io.BytesIO):
    """wsgi.input that remembers how many bytes the app read."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.taken = 0

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        self.taken += len(chunk)
        return chunk


def chunked(app, *, terminated=True, streams=None):
    """The app behind a server that got a chunked body: no CONTENT_LENGTH, and (like
    gunicorn and cheroot) a wsgi.input that ends where the body ends."""
    def wsgi(environ, start_response):
        environ.pop("CONTENT_LENGTH", None)
        environ["HTTP_TRANSFER_ENCODING"] = "chunked"
        if terminated:
            environ["wsgi.input_terminated"] = True
        if streams is not None:
            environ["wsgi.input"] = CountingStream(environ["wsgi.input"].read(-1))
            streams.append(environ["wsgi.input"])
        return app(environ, start_response)
    return wsgi


def post_raw(h, raw, headers=None):
    return h.client.simulate_post("/v1/recommendations", body=raw, headers={**JSON, **(headers or {})})


def post_chunked(h, raw, **kwargs):
    client = falcon.testing.TestClient(chunked(h.app, **kwargs))
    return client.simulate_post("/v1/recommendations", body=raw, headers=JSON)


# --- chunked bodies ---------------------------------------------------------------------------

def test_a_chunked_body_is_read_like_any_other(harness):
    response = post_chunked(harness, json.dumps({"text": TEXT, "k": 2}).encode())

    assert response.status_code == 200
    assert harness.actors.requests == [{"text": TEXT, "k": 2, "strict": False, "min_generation": None}]


def test_a_chunked_body_over_the_limit_is_413_and_read_no_further_than_one_byte_past_it(harness):
    # Given a 10 MB chunked body and the default 1 MiB limit
    streams: list[CountingStream] = []
    body = json.dumps({"text": "x" * 10_000_000}).encode()

    response = post_chunked(harness, body, streams=streams)

    assert response.status_code == 413
    assert f"larger than {harness.settings.max_body_bytes} bytes" in response.json["description"]
    assert streams[0].taken == harness.settings.max_body_bytes + 1
    assert harness.actors.requests == []


def test_an_empty_chunked_body_is_400(harness):
    response = post_chunked(harness, b"")

    assert response.status_code == 400
    assert "the request body is empty" in response.json["description"]


def test_a_chunked_body_on_a_server_that_does_not_end_the_input_is_411(harness):
    response = post_chunked(harness, json.dumps({"text": TEXT}).encode(), terminated=False)

    assert response.status_code == 411
    assert "send it with a Content-Length header" in response.json["description"]


def test_a_content_length_over_the_limit_is_413_before_reading(make_harness):
    h = make_harness(max_body_bytes=100)
    response = post_raw(h, json.dumps({"text": "x" * 200}).encode())

    assert response.status_code == 413
    assert "(212 bytes) is larger than 100 bytes" in response.json["description"]


# --- encodings --------------------------------------------------------------------------------

BODY = json.dumps({"text": TEXT})


@pytest.mark.parametrize(("raw", "rule"), [
    (codecs.BOM_UTF8 + BODY.encode(), "starts with a UTF-8 byte order mark (EF BB BF): send UTF-8 JSON without a BOM"),
    (BODY.encode("utf-16"), "is UTF-16-encoded: send JSON as UTF-8"),
    (BODY.encode("utf-16-le"), "is UTF-16-encoded"),
    (BODY.encode("utf-16-be"), "is UTF-16-encoded"),
    (BODY.encode("utf-32"), "is UTF-32-encoded"),
    (BODY.encode("utf-32-be"), "is UTF-32-encoded"),
    (b'{"text": "caf\xe9"}', "is not valid UTF-8 (byte 13: invalid continuation byte)"),
    (b'{"text": "\xed\xa0\x80 x"}', "is not valid UTF-8 (byte 10"),  # a surrogate encoded as UTF-8
])
def test_a_body_that_is_not_utf_8_is_400_saying_so(harness, raw, rule):
    response = post_raw(harness, raw)

    assert response.status_code == 400
    assert rule in response.json["description"]
    assert harness.actors.requests == []


def test_utf_8_beyond_ascii_is_accepted(harness):
    response = post_raw(harness, json.dumps({"text": "Réseaux de neurones 神経回路 🧠"}, ensure_ascii=False).encode())

    assert response.status_code == 200
    assert harness.actors.requests[0]["text"] == "Réseaux de neurones 神経回路 🧠"


@pytest.mark.parametrize("content_type", [
    "application/json; charset=utf-8", "application/json; charset=UTF-8", 'application/json; charset="utf-8"',
    "application/json;charset=utf-8", "Application/JSON",
])
def test_json_declared_as_utf_8_or_without_charset_is_accepted(harness, content_type):
    response = post_raw(harness, BODY.encode(), headers={"Content-Type": content_type})

    assert response.status_code == 200


@pytest.mark.parametrize("charset", ["latin-1", "iso-8859-1", "utf-16", "\"utf-16le\"", "us-ascii"])
def test_a_charset_other_than_utf_8_is_415(harness, charset):
    response = post_raw(harness, BODY.encode(), headers={"Content-Type": f"application/json; charset={charset}"})

    assert response.status_code == 415
    assert "takes no charset other than utf-8" in response.json["description"]
    assert charset.strip('"') in response.json["description"]


# --- strict JSON ------------------------------------------------------------------------------

@pytest.mark.parametrize(("raw", "rule"), [
    (b'{"text": "a", "k": 3, "k": 4}', "has the key 'k' twice in one object"),
    (b'{"text": "a", "text": "b"}', "has the key 'text' twice"),
    (b'{"text": "a", "exclude_ids": [{"x": 1, "x": 2}]}', "has the key 'x' twice"),
    (b'{"text": "a", "k": NaN}', "not valid JSON: NaN is not a JSON value"),
    (b'{"text": "a", "k": Infinity}', "Infinity is not a JSON value"),
    (b'{"text": "a", "k": -Infinity}', "-Infinity is not a JSON value"),
    (b'{"text": "\\ud800"}', "holds a lone surrogate (\\ud800) in a string"),
    (b'{"text": "ok \\udfff ok"}', "lone surrogate (\\udfff)"),
    (b'{"text": "ok", "exclude_ids": ["\\ude00\\ud83d"]}', "lone surrogate"),  # a pair in the wrong order
    (b'{"\\ud800": 1, "text": "ok"}', "lone surrogate (\\ud800)"),  # in a key
])
def test_json_that_is_not_strict_is_400_naming_the_fault(harness, raw, rule):
    response = post_raw(harness, raw)

    assert response.status_code == 400
    assert rule in response.json["description"]
    assert harness.actors.requests == []


def test_a_surrogate_pair_escape_is_one_character_and_accepted(harness):
    response = post_raw(harness, b'{"text": "brain \\ud83e\\udde0"}')

    assert response.status_code == 200
    assert harness.actors.requests[0]["text"] == "brain \U0001f9e0"
