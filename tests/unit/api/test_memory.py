"""Storms of bad input leave nothing behind: rounds of every kind of request the API
refuses, sent from several threads (as gunicorn's gthread worker serves them), do not
grow the memory Python holds once the first rounds have warmed the caches up.

What is measured is tracemalloc's traced size (the live Python objects), after a
``gc.collect()``: a leak (errors or their tracebacks kept, a cache keyed by the path
or the body, labels without bound) shows up there, whatever the allocator does. The
resident set size of a real gunicorn worker under the same storm is a figure of
``benchmarks/_storm.py`` (docs/operations.md, "Memory").
"""

from __future__ import annotations

import codecs
import gc
import itertools
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import falcon
import falcon.testing
import pytest

from recsys_api.errors import ApiError

from .conftest import Harness

MIB = 1024 * 1024
JSON = {"Content-Type": "application/json"}
ZIP = {"Content-Type": "application/zip"}
THREADS = 8
REQUESTS_PER_ROUND = 200
#: Rounds that may grow the traced size: first imports, compiled patterns, the
#: metrics' labelled children, bounded caches filling up (urlsplit's 128 entries, by the
#: random paths), the free lists of the interpreter.
WARM_UP_ROUNDS = 3
MEASURED_ROUNDS = 5
#: What the measured rounds (1,000 bad requests) may add to the traced size, in bytes.
#: The app adds ~10 KiB (the caches above, still filling); a leak of one short string
#: per refused request adds ~130 KiB.
GROWTH_BOUND = 48 * 1024


class LazyBody:
    """A ``wsgi.input`` of ``size`` bytes made as they are read (the test holds no body)."""

    def __init__(self, size: int, piece: bytes = b" ") -> None:
        self.left = size
        self.piece = piece
        self.taken = 0

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = self.left
        size = min(size, self.left)
        self.left -= size
        self.taken += size
        return self.piece * size

    # The rest of wsgi.input's interface (the test client's WSGI validator checks for it).
    def readline(self, size: int = -1) -> bytes:
        return self.read(size)

    def readlines(self, hint: int = -1) -> list[bytes]:
        return [self.read()]

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.readlines())


@dataclass(frozen=True)
class Bad:
    """One kind of bad request and the status it is refused with."""

    name: str
    status: int
    method: str
    path: str | Callable[[], str] = "/v1/recommendations"
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=lambda: dict(JSON))
    #: A body of this many bytes, made while it is read: with Content-Length, or chunked.
    lazy: int = 0
    chunked: bool = False

    def send(self, client: falcon.testing.TestClient) -> falcon.testing.Result:
        extras: dict[str, Any] = {}
        if self.lazy:
            extras["wsgi.input"] = LazyBody(self.lazy)
            if self.chunked:
                extras.update({"HTTP_TRANSFER_ENCODING": "chunked", "wsgi.input_terminated": True})
            else:
                extras["CONTENT_LENGTH"] = str(self.lazy)
        path = self.path() if callable(self.path) else self.path
        return client.simulate_request(self.method, path, body=self.body, headers=self.headers, extras=extras)


def _post(name: str, body: bytes, status: int = 400, headers: dict[str, str] | None = None) -> Bad:
    return Bad(name, status, "POST", body=body, headers=headers if headers is not None else dict(JSON))


#: Every kind of input the API refuses (as tests/support/storm.py sends them to gunicorn).
BAD = (
    _post("malformed_json", b'{"text": "neural networks", '),
    _post("not_utf8", b'{"text": "\xff\xfe neural"}'),
    _post("wrong_type_text", b'{"text": 12345}'),
    _post("wrong_type_k", b'{"text": "neural networks", "k": "ten"}'),
    _post("huge_k", b'{"text": "neural networks", "k": 1' + b"0" * 400 + b"}"),
    _post("float_k", b'{"text": "neural networks", "k": 1e308}'),
    _post("unknown_field", b'{"text": "neural networks", "colour": "red"}'),
    _post("neither_field", b'{"k": 3}'),
    _post("not_an_object", b"[1, 2, 3]"),
    _post("deep_nesting", b"[" * 100_000 + b"]" * 100_000),
    _post("nan", b'{"text": "neural networks", "k": NaN}'),
    _post("lone_surrogate", b'{"text": "neural \\ud800 networks"}'),
    _post("no_words", b'{"text": "\\u0000\\u200b ..."}'),
    _post("bom", codecs.BOM_UTF8 + b'{"text": "neural networks"}'),
    _post("utf16", '{"text": "neural networks"}'.encode("utf-16-le")),
    _post("duplicate_keys", b'{"text": "neural networks", "text": "again"}'),
    _post("empty_body", b""),
    _post("bad_charset", b'{"text": "x"}', 415, {"Content-Type": "application/json; charset=latin-1"}),
    _post("not_json", b"text=neural", 415, {"Content-Type": "application/x-www-form-urlencoded"}),
    _post("bad_prefer", b'{"text": "neural networks"}', 400, {**JSON, "Prefer": "respond-async;;="}),
    Bad("too_large_10mb", 413, "POST", lazy=10 * MIB),
    Bad("too_large_chunked", 413, "POST", lazy=10 * MIB, chunked=True),
    Bad("unknown_route", 404, "GET", path=lambda: f"/v1/nothing/{uuid.uuid4().hex}"),
    Bad("method_not_allowed", 405, "DELETE"),
    Bad("unknown_task", 404, "GET", path=lambda: f"/v1/tasks/{uuid.uuid4()}"),
    Bad("bad_token_archive", 401, "PUT", "/v1/engine/archive", lazy=5 * MIB,
        headers={**ZIP, "Authorization": "Bearer wrong"}),
    Bad("no_token_archive", 401, "PUT", "/v1/engine/archive", lazy=5 * MIB, headers=dict(ZIP)),
)


def storm_round(app: Any, requests: int = REQUESTS_PER_ROUND, threads: int = THREADS) -> list[str]:
    """Send ``requests`` bad requests (the kinds in turn) from ``threads`` threads; the
    kinds that were not refused with their status."""
    client = falcon.testing.TestClient(app)
    kinds = itertools.islice(itertools.cycle(BAD), requests)

    def send(kind: Bad) -> str | None:
        status = kind.send(client).status_code
        return None if status == kind.status else f"{kind.name}: {status} (expected {kind.status})"

    with ThreadPoolExecutor(threads) as pool:
        return [wrong for wrong in pool.map(send, kinds) if wrong is not None]


@pytest.fixture
def tracing() -> Iterator[None]:
    tracemalloc.start()
    try:
        yield
    finally:
        tracemalloc.stop()


def traced_after_rounds(app: Any, rounds: int) -> tuple[list[int], list[str]]:
    """The traced size after each round (after a full collection), and what was not refused as expected."""
    sizes, wrong = [], []
    for _ in range(rounds):
        wrong += storm_round(app)
        gc.collect()
        sizes.append(tracemalloc.get_traced_memory()[0])
    return sizes, wrong


def growth(app: Any) -> tuple[int, list[int], list[str]]:
    sizes, wrong = traced_after_rounds(app, WARM_UP_ROUNDS + MEASURED_ROUNDS)
    return sizes[-1] - sizes[WARM_UP_ROUNDS - 1], sizes, wrong


def test_every_kind_of_bad_input_is_refused_with_its_status(harness: Harness) -> None:
    # One of each, in turn, from several threads
    assert storm_round(harness.app, requests=len(BAD) * 2) == []


def test_a_storm_of_bad_input_grows_no_python_memory_after_warm_up(harness: Harness, tracing: None) -> None:
    # Given the app warmed up by three rounds of every kind of bad input (600 requests)
    # When five more rounds (1,000 requests) are sent from 8 threads
    grew, sizes, wrong = growth(harness.app)

    # Then every one was refused as it should be, and the live Python objects did not grow
    assert wrong == []
    assert grew < GROWTH_BOUND, f"traced size after each round: {sizes}"


def test_the_measure_catches_a_leak_of_one_short_string_per_refused_request(harness: Harness, tracing: None) -> None:
    # Given an app that keeps the description of each error it answers (a list of strings)
    kept: list[str] = []

    def keep_description(req: falcon.Request, resp: falcon.Response, exc: ApiError, params: dict[str, Any]) -> None:
        kept.append(str(exc.description))
        raise exc

    harness.app.add_error_handler(falcon.HTTPError, keep_description)

    # When the same storm is measured
    grew, sizes, _ = growth(harness.app)

    # Then it is over the bound (so the bound would catch a leak that small)
    assert len(kept) == (WARM_UP_ROUNDS + MEASURED_ROUNDS) * REQUESTS_PER_ROUND
    assert grew > GROWTH_BOUND, f"traced size after each round: {sizes}"


def test_an_over_limit_chunked_body_is_read_one_byte_past_the_limit_and_never_held_whole(
    harness: Harness, tracing: None
) -> None:
    # Given a 10 MiB chunked body made as it is read, and the default 1 MiB limit
    body = LazyBody(10 * MIB)
    extras = {"wsgi.input": body, "HTTP_TRANSFER_ENCODING": "chunked", "wsgi.input_terminated": True}
    client = falcon.testing.TestClient(harness.app)
    client.simulate_post("/v1/recommendations", headers=JSON, extras=extras)  # warm up
    gc.collect()
    tracemalloc.reset_peak()
    before = tracemalloc.get_traced_memory()[0]

    body = LazyBody(10 * MIB)
    response = client.simulate_post("/v1/recommendations", headers=JSON,
                                    extras={**extras, "wsgi.input": body})

    # Then it is a 413, no more than the limit + 1 byte was read, and at most the limit
    # (plus one read step) was held at once: no copy of it, no join
    assert response.status_code == 413
    limit = harness.settings.max_body_bytes
    assert body.taken == limit + 1
    peak = tracemalloc.get_traced_memory()[1] - before
    assert peak < limit + 256 * 1024, f"peak {peak} bytes above the traced size before the request"


def test_errors_raised_while_reading_a_body_do_not_keep_it_alive(harness: Harness, tracing: None) -> None:
    # Given a body just under the limit that is not JSON (an error raised with a cause)
    limit = harness.settings.max_body_bytes
    raw = b"{" + b" " * (limit - 2) + b"x"
    client = falcon.testing.TestClient(harness.app)
    client.simulate_post("/v1/recommendations", body=raw, headers=JSON)  # warm up
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]

    # When it is refused ten times
    for _ in range(10):
        assert client.simulate_post("/v1/recommendations", body=raw, headers=JSON).status_code == 400
    gc.collect()

    # Then none of the bodies (1 MiB each) or their decoded text is still alive
    assert tracemalloc.get_traced_memory()[0] - before < limit // 4
