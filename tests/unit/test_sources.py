"""Publication sources: files in every format, the HTTP backend against a real local
server, open_source, and load_publications' counting."""

from __future__ import annotations

import gzip
import json
import logging
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from recsys.config import Settings
from recsys.errors import SourceError
from recsys.sources import (
    DemoSource,
    FileSource,
    HttpSource,
    Source,
    load_publications,
    open_source,
)


def record(n: int, **extra: Any) -> dict[str, Any]:
    return {"id": f"p{n}", "title": f"Title {n}", "abstract": f"Abstract number {n}.", **extra}


RECORDS = [record(n) for n in range(1, 6)]
IDS = [r["id"] for r in RECORDS]


def ids(source: Source) -> list[str]:
    return [p.id for p in load_publications(source)]


# Files -------------------------------------------------------------------------------

FORMATS: dict[str, Callable[[list[dict[str, Any]]], str]] = {
    "json array": lambda rs: json.dumps(rs),
    "json array, indented": lambda rs: json.dumps(rs, indent=2),
    "jsonl": lambda rs: "\n".join(json.dumps(r) for r in rs) + "\n",
    "jsonl without final newline, with blank lines": lambda rs: "\n\n".join(json.dumps(r) for r in rs),
    "object with publications": lambda rs: json.dumps({"publications": rs, "total": len(rs)}),
    "object with items, indented": lambda rs: json.dumps({"items": rs}, indent=2),
    "object with results": lambda rs: json.dumps({"count": len(rs), "results": rs}),
    "object with data": lambda rs: json.dumps({"data": rs}),
    "leading whitespace and BOM": lambda rs: "\ufeff  \n\n" + json.dumps(rs),
}


@pytest.mark.parametrize("gzipped", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("fmt", FORMATS.keys())
def test_file_source_reads_every_format(tmp_path: Path, fmt: str, gzipped: bool) -> None:
    data = FORMATS[fmt](RECORDS).encode("utf-8")
    path = tmp_path / "publications.data"  # no telling suffix: the content decides
    path.write_bytes(gzip.compress(data) if gzipped else data)

    assert ids(FileSource(path)) == IDS


def test_file_source_skips_and_counts_bad_jsonl_lines(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    lines = [
        json.dumps(record(1)),
        '{"id": "p2", "title": "broken',  # not JSON
        json.dumps({"id": "p3", "abstract": "no title"}),  # invalid record
        "[1, 2, 3]",  # not an object
        json.dumps(record(4)),
        b'{"id": "p5", "title": "bad \xff utf-8", "abstract": "x"}'.decode("latin-1"),
        "",
        json.dumps(record(6)),
    ]
    path = tmp_path / "pubs.jsonl"
    path.write_bytes("\n".join(lines).encode("latin-1"))

    with caplog.at_level(logging.INFO, logger="recsys.sources"):
        assert ids(FileSource(path)) == ["p1", "p4", "p6"]

    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 4
    assert any("line 2" in w and "not valid JSON" in w for w in warnings)
    assert any("line 3" in w and "'p3' has no 'title'" in w for w in warnings)
    assert any("line 4" in w and "must be a JSON object" in w for w in warnings)
    assert any("line 6" in w for w in warnings)
    assert "3 publications from file" in caplog.text and "4 skipped as invalid" in caplog.text


def test_a_broken_first_jsonl_line_does_not_hide_the_others(tmp_path: Path) -> None:
    path = tmp_path / "pubs.jsonl"
    path.write_text('{"id": "p0", "title": \n' + "\n".join(json.dumps(r) for r in RECORDS))

    assert ids(FileSource(path)) == IDS


def test_only_the_first_invalid_records_are_logged_one_by_one(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "pubs.jsonl"
    path.write_text("\n".join([json.dumps({"id": f"x{i}"}) for i in range(20)] + [json.dumps(record(1))]))

    with caplog.at_level(logging.WARNING, logger="recsys.sources"):
        assert ids(FileSource(path)) == ["p1"]

    assert sum("skipping an invalid record" in r.getMessage() for r in caplog.records) == 5
    assert "skipped 15 more invalid records" in caplog.text


def test_duplicate_ids_keep_the_last_record_and_are_counted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rows = [record(1), record(2, title="old"), record(3), record(2, title="new"), record(3, title="newer")]
    path = tmp_path / "pubs.json"
    path.write_text(json.dumps(rows))

    with caplog.at_level(logging.INFO, logger="recsys.sources"):
        pubs = load_publications(FileSource(path))

    assert [(p.id, p.title) for p in pubs] == [("p1", "Title 1"), ("p2", "new"), ("p3", "newer")]
    assert "2 duplicate ids" in caplog.text


def test_progress_reports_every_record_read(tmp_path: Path) -> None:
    path = tmp_path / "pubs.jsonl"
    path.write_text("\n".join([json.dumps(r) for r in RECORDS] + ["not json"]))
    calls: list[tuple[str, int, int | None]] = []

    load_publications(FileSource(path), lambda stage, done, total=None: calls.append((stage, done, total)))

    assert calls == [*(("fetch", n, None) for n in range(1, 7)), ("fetch", 6, 6)]  # the end: its total


def test_iterating_a_source_yields_the_valid_publications_only(tmp_path: Path) -> None:
    path = tmp_path / "pubs.jsonl"
    path.write_text("\n".join([json.dumps(record(1)), "{}", json.dumps(record(2))]))

    assert [p.id for p in FileSource(path)] == ["p1", "p2"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty"),
        (b"  \n\n\t\n", "is empty"),
        (b"id,title\np1,Title\n", "neither JSON nor JSON lines"),
        (b'[{"id": "p1", "title": "x", "abstract": "y"},', "not valid JSON"),
        (b'{"publications": 3,\n "total": 0}', "without a list of records under any of publications, items"),
        (b'"just a string"', "neither JSON nor JSON lines"),
        (gzip.compress(json.dumps(RECORDS).encode())[:-20], "cannot read publications file"),
        (b"\x1f\x8bnot really gzip", "cannot read publications file"),
    ],
    ids=["empty", "blank", "csv", "truncated json", "no list", "json string", "truncated gzip", "fake gzip"],
)
def test_a_malformed_file_is_a_source_error_naming_it(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(content)

    with pytest.raises(SourceError, match=message) as info:
        load_publications(FileSource(path))
    assert str(path) in str(info.value)


def test_a_source_without_a_valid_record_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "pubs.jsonl"
    path.write_text('{"id": "a"}\n{"title": "no id"}\n')

    with pytest.raises(SourceError, match=r"no valid publication \(2 records read, 2 invalid; .*'a' has no 'title'"):
        load_publications(FileSource(path))


def test_a_missing_file_is_a_source_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(SourceError, match=f"{missing}.*does not exist"):
        load_publications(FileSource(missing))


# open_source ---------------------------------------------------------------------------


def test_open_source_picks_the_source_for_each_spec(tmp_path: Path) -> None:
    path = tmp_path / "pubs.json"
    path.write_text(json.dumps(RECORDS))
    settings = Settings(source_timeout=2.5, source_retries=7)

    assert isinstance(open_source(None), DemoSource)
    assert isinstance(open_source("  "), DemoSource)
    http = open_source("https://backend.example/v1/publications", settings)
    assert isinstance(http, HttpSource)
    assert (http.timeout, http.retries) == (2.5, 7)
    assert ids(open_source(str(path))) == IDS
    assert ids(open_source(path.as_uri())) == IDS


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("{tmp}/missing.jsonl", "publications file {tmp}/missing.jsonl does not exist"),
        ("file://{tmp}/missing.jsonl", "publications file {tmp}/missing.jsonl does not exist"),
        ("{tmp}", "is not a file"),
        ("ftp://example.org/pubs.json", "unsupported publications source"),
        ("file://otherhost/pubs.json", "names a remote host"),
    ],
)
def test_open_source_rejects_what_it_cannot_read(tmp_path: Path, spec: str, message: str) -> None:
    with pytest.raises(SourceError, match=message.format(tmp=tmp_path)):
        open_source(spec.format(tmp=tmp_path))


def test_http_source_rejects_a_non_http_url() -> None:
    with pytest.raises(SourceError, match="not an http"):
        HttpSource("ftp://example.org/x")


# HTTP ----------------------------------------------------------------------------------


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # JSON-encoded unless bytes
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


class Backend:
    """A real HTTP server on 127.0.0.1: each path answers its replies in turn (the last repeats)."""

    def __init__(self) -> None:
        self.routes: dict[str, list[Reply]] = {}
        self.hits: Counter[str] = Counter()
        self.request_headers: list[dict[str, str]] = []
        self.dynamic: Callable[[str], Reply] | None = None
        self._lock = threading.Lock()
        backend = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                reply = backend._reply(self.path, dict(self.headers))
                time.sleep(reply.delay)
                body = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    for key, value in reply.headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
                    pass

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def route(self, path: str, *replies: Reply) -> None:
        self.routes[path] = list(replies)

    def _reply(self, path: str, headers: dict[str, str]) -> Reply:
        with self._lock:
            self.hits[path] += 1
            self.request_headers.append(headers)
            if path in self.routes:
                replies = self.routes[path]
                return replies.pop(0) if len(replies) > 1 else replies[0]
        if self.dynamic is not None:
            return self.dynamic(path)
        return Reply(404, b"no such page")


@pytest.fixture
def backend() -> Iterator[Backend]:
    server = Backend()
    thread = threading.Thread(target=server.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.server.shutdown()
        server.server.server_close()
        thread.join(timeout=5)


def fast(url: str, **kwargs: Any) -> HttpSource:
    """An HttpSource with tiny backoff, so retry tests take milliseconds."""
    options: dict[str, Any] = {"timeout": 5.0, "retries": 2, "backoff": 0.001, "max_backoff": 0.01}
    options.update(kwargs)
    return HttpSource(url, **options)


def page(numbers: range, next_url: str | None = None, key: str = "publications") -> dict[str, Any]:
    return {key: [record(n) for n in numbers], "next": next_url}


def test_http_follows_next_links_across_pages(backend: Backend) -> None:
    backend.route("/pubs", Reply(body=page(range(1, 4), f"{backend.url}/pubs?page=2")))
    backend.route("/pubs?page=2", Reply(body=page(range(4, 6), f"{backend.url}/pubs?page=3", key="results")))
    backend.route("/pubs?page=3", Reply(body={"items": [record(6)]}))  # no "next": the end

    assert ids(fast(f"{backend.url}/pubs")) == [f"p{n}" for n in range(1, 7)]
    assert all(h["Accept"] == "application/json" for h in backend.request_headers)
    assert all(h["User-Agent"].startswith("recsys/") for h in backend.request_headers)


def test_http_resolves_relative_next_links_against_the_page(backend: Backend) -> None:
    backend.route("/api/v1/pubs", Reply(body=page(range(1, 2), "pubs?cursor=b")))
    backend.route("/api/v1/pubs?cursor=b", Reply(body=page(range(2, 3), "/other/c")))
    backend.route("/other/c", Reply(body=page(range(3, 4), "?cursor=d")))
    backend.route("/other/c?cursor=d", Reply(body=page(range(4, 5), None)))

    assert ids(fast(f"{backend.url}/api/v1/pubs")) == ["p1", "p2", "p3", "p4"]


def test_http_follows_link_headers(backend: Backend) -> None:
    backend.route("/a", Reply(body=[record(1), record(2)], headers={"Link": '</b>; rel="next"'}))
    backend.route("/b", Reply(body=[record(3)], headers={"Link": f'<{backend.url}/c>; rel="next", </a>; rel="first"'}))
    backend.route("/c", Reply(body=[record(4)]))

    assert ids(fast(f"{backend.url}/a")) == ["p1", "p2", "p3", "p4"]


def test_http_retries_a_page_that_fails_once(backend: Backend, caplog: pytest.LogCaptureFixture) -> None:
    backend.route("/a", Reply(body=page(range(1, 3), "/b")))
    backend.route("/b", Reply(500, b"database is restarting"), Reply(body=page(range(3, 4))))

    with caplog.at_level(logging.WARNING, logger="recsys.sources"):
        assert ids(fast(f"{backend.url}/a")) == ["p1", "p2", "p3"]

    assert backend.hits["/b"] == 2
    assert "HTTP 500" in caplog.text and "retry 1 of 2" in caplog.text


def test_http_gives_up_on_a_page_that_always_fails(backend: Backend) -> None:
    backend.route("/a", Reply(body=page(range(1, 3), "/b")))
    backend.route("/b", Reply(503, b"down"))

    with pytest.raises(SourceError, match=f"{backend.url}/b after 4 attempt.*HTTP 503"):
        load_publications(fast(f"{backend.url}/a", retries=3))
    assert backend.hits["/b"] == 4


def test_http_a_404_is_an_immediate_clear_error(backend: Backend) -> None:
    backend.route("/a", Reply(404, b'{"error": "no publications endpoint here"}'))

    with pytest.raises(SourceError, match=r"/a answered HTTP 404 Not Found: .*no publications endpoint here"):
        load_publications(fast(f"{backend.url}/a", retries=5))
    assert backend.hits["/a"] == 1


def test_http_retries_a_timeout_then_fails(backend: Backend) -> None:
    backend.route("/slow", Reply(body=page(range(1, 2)), delay=1.0))

    with pytest.raises(SourceError, match=r"/slow after 2 attempt.*no answer within 0.2 s"):
        load_publications(fast(f"{backend.url}/slow", timeout=0.2, retries=1))
    assert backend.hits["/slow"] == 2


def test_http_retries_a_timeout_then_succeeds(backend: Backend) -> None:
    backend.route("/slow", Reply(body=page(range(1, 2)), delay=1.0), Reply(body=page(range(1, 3))))

    assert ids(fast(f"{backend.url}/slow", timeout=0.2, retries=1)) == ["p1", "p2"]


def test_http_retries_a_refused_connection() -> None:
    with socket.socket() as sock:  # a port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    with pytest.raises(SourceError, match=r"after 3 attempt.*ConnectError"):
        load_publications(fast(f"http://127.0.0.1:{port}/pubs"))


def test_http_honours_retry_after_within_reason(backend: Backend) -> None:
    backend.route("/a", Reply(429, b"slow down", {"Retry-After": "7"}), Reply(body=page(range(1, 2), "/b")))
    backend.route("/b", Reply(429, b"slow down", {"Retry-After": "86400"}), Reply(body=page(range(2, 3))))
    slept: list[float] = []

    source = fast(f"{backend.url}/a", max_retry_after=30.0, sleep=slept.append)

    assert ids(source) == ["p1", "p2"]
    assert slept == [7.0, 30.0]


def test_http_detects_a_pagination_loop(backend: Backend) -> None:
    backend.route("/a", Reply(body=page(range(1, 2), "/b")))
    backend.route("/b", Reply(body=page(range(2, 3), f"{backend.url}/a")))

    with pytest.raises(SourceError, match=r"pagination loop .* page 2 links back to .*/a"):
        load_publications(fast(f"{backend.url}/a"))


def test_http_stops_at_an_absurd_page_count(backend: Backend) -> None:
    backend.dynamic = lambda path: Reply(body=page(range(1, 2), f"/p{int(path[2:]) + 1}"))

    with pytest.raises(SourceError, match="more than 3 pages"):
        load_publications(fast(f"{backend.url}/p1", max_pages=3))
    assert sum(backend.hits.values()) == 3


def test_http_counts_invalid_records(backend: Backend, caplog: pytest.LogCaptureFixture) -> None:
    backend.route("/a", Reply(body={"data": [record(1), {"id": "x"}, "junk"], "next": "/b"}))
    backend.route("/b", Reply(body=[record(2), {"title": "no id"}]))

    with caplog.at_level(logging.INFO, logger="recsys.sources"):
        assert ids(fast(f"{backend.url}/a")) == ["p1", "p2"]

    assert "page 1 item 2: publication 'x' has no 'title'" in caplog.text
    assert "page 2 item 2: missing 'id'" in caplog.text
    assert "3 skipped as invalid" in caplog.text


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (Reply(body=b"<html>maintenance</html>"), "did not answer JSON .*maintenance"),
        (Reply(body={"total": 0}), "page 1 .* without a list of records"),
        (Reply(body={"items": [], "next": 5}), "'next' that is not a URL"),
        (Reply(body={"items": [{"id": "a"}]}), "no valid publication"),
        (Reply(body={"items": [], "next": "ftp://elsewhere/x"}), "not http"),
    ],
    ids=["html", "no list", "bad next", "no valid record", "ftp next"],
)
def test_http_malformed_pages_are_clear_errors(backend: Backend, reply: Reply, message: str) -> None:
    backend.route("/a", reply)

    with pytest.raises(SourceError, match=message):
        load_publications(fast(f"{backend.url}/a"))


def test_http_hides_a_password_in_messages(backend: Backend) -> None:
    url = backend.url.replace("http://", "http://reader:s3cret@") + "/missing"

    source = fast(url)
    with pytest.raises(SourceError) as info:
        load_publications(source)

    assert "s3cret" not in str(info.value) and "s3cret" not in source.description
    assert "reader:***@" in str(info.value)
