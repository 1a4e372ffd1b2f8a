"""A fake of the API's engine endpoints, for worker tests (see recsys.protocol).

:class:`FakeApi` keeps archives in memory and answers ``GET /v1/engine``,
``GET /v1/engine/archive`` and ``PUT /v1/engine/archive`` as the real API does
(generations, bearer token, 409 for an archive not newer than the current one).
It is reachable in-process (:meth:`FakeApi.transport`, an httpx MockTransport) or
over HTTP (:meth:`FakeApi.serve`, a threaded http.server), and counts downloads and
uploads. Tests can corrupt what it serves and script upload failures.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from hashlib import sha256
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import httpx

from recsys import protocol
from recsys.archive import verify
from recsys.errors import InvalidArchive

TOKEN = "test-token"


@dataclass
class Stored:
    generation: int
    version: str
    created_at: str
    manifest: dict[str, Any]
    data: bytes
    sha256: str
    installed_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    def info(self) -> dict[str, Any]:
        return dict(self.manifest, generation=self.generation, sha256=self.sha256, size=len(self.data),
                    installed_at=self.installed_at)


class FakeApi:
    def __init__(self, token: str = TOKEN) -> None:
        self.token = token
        self._lock = threading.Lock()
        self.current: Stored | None = None
        self.archives: dict[str, Stored] = {}
        self.generation = 0
        self.downloads = 0
        self.uploads = 0
        #: When set, GET /v1/engine/archive serves these bytes instead (a corruption).
        self.serve_instead: bytes | None = None
        #: Statuses answered to the next PUTs, before accepting one (e.g. [503, 503]).
        self.upload_failures: list[int] = []
        #: Called with each archive made current by an upload (e.g. to broadcast it).
        self.on_upload: Callable[[Stored], None] | None = None
        #: GET /publications: the publications backend (a JSON list), for builds.
        self.publications: list[dict[str, Any]] = []
        #: While set and not open, GET /publications waits for it (a slow source).
        self.publications_gate: threading.Event | None = None
        #: When set, GET /publications answers this status (a failing source).
        self.publications_status: int | None = None
        self.publication_requests = 0

    # -- test controls -------------------------------------------------------------

    def publish(self, archive: Path) -> Stored:
        """Make ``archive`` current with the next generation (as an accepted upload)."""
        verified = verify(archive)
        data = archive.read_bytes()
        with self._lock:
            self.generation += 1
            stored = Stored(self.generation, verified.manifest.version, verified.manifest.created_at,
                            verified.manifest.to_dict(), data, sha256(data).hexdigest())
            self.archives[stored.version] = stored
            self.current = stored
        return stored

    def rollback(self, version: str) -> Stored:
        """Make an earlier archive current again, as a new generation."""
        with self._lock:
            old = self.archives[version]
            self.generation += 1
            self.current = Stored(self.generation, old.version, old.created_at, old.manifest, old.data, old.sha256)
            return self.current

    # -- the endpoints ---------------------------------------------------------------

    def handle(self, method: str, path: str, headers: Any, body: bytes) -> tuple[int, dict[str, str], bytes]:
        if path == "/v1/engine" and method == "GET":
            current = self.current
            if current is None:
                return _error(404, "Not Found", "no engine yet")
            return 200, {"Content-Type": "application/json"}, json.dumps(current.info()).encode()
        if path == "/v1/engine/archive" and method == "GET":
            with self._lock:
                current = self.current
                if current is None:
                    return _error(404, "Not Found", "no engine yet")
                self.downloads += 1
                data = self.serve_instead if self.serve_instead is not None else current.data
            return 200, {
                "Content-Type": "application/zip",
                "ETag": f'"{current.version}"',
                protocol.HEADER_GENERATION: str(current.generation),
                protocol.HEADER_VERSION: current.version,
                protocol.HEADER_SHA256: current.sha256,
            }, data
        if path == "/v1/engine/archive" and method == "PUT":
            return self._upload(headers, body)
        if path == "/publications" and method == "GET":
            return self._publications()
        return _error(404, "Not Found", f"{method} {path}")

    def _publications(self) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            self.publication_requests += 1
        gate = self.publications_gate
        if gate is not None:
            gate.wait(120)
        if self.publications_status is not None:
            return _error(self.publications_status, "Backend failure", "the publications backend is failing")
        return 200, {"Content-Type": "application/json"}, json.dumps(self.publications).encode()

    def _upload(self, headers: Any, body: bytes) -> tuple[int, dict[str, str], bytes]:
        if headers.get("authorization") != f"Bearer {self.token}":
            return _error(401, "Unauthorized", "a bearer token is required")
        with self._lock:
            if self.upload_failures:
                status = self.upload_failures.pop(0)
                return _error(status, "Scripted failure", f"answering {status} as told")
        with TemporaryDirectory() as tmp:
            path = Path(tmp) / "upload.zip"
            path.write_bytes(body)
            try:
                verified = verify(path)
            except InvalidArchive as exc:
                return _error(400, "Invalid archive", str(exc))
            current = self.current
            if current is not None and verified.manifest.created_at <= current.created_at:
                return _error(409, "Conflict", "the archive is not newer than the current one")
            stored = self.publish(path)
        with self._lock:
            self.uploads += 1
        if self.on_upload is not None:
            self.on_upload(stored)
        return 201, {"Content-Type": "application/json"}, json.dumps(stored.info()).encode()

    # -- transports ------------------------------------------------------------------

    def transport(self) -> httpx.MockTransport:
        def handler(request: httpx.Request) -> httpx.Response:
            body = request.read()
            status, headers, content = self.handle(request.method, request.url.path, request.headers, body)
            return httpx.Response(status, headers=headers, content=content)

        return httpx.MockTransport(handler)

    @contextmanager
    def serve(self) -> Iterator[str]:
        """Serve over HTTP on 127.0.0.1 (a free port) in a thread; yields the base URL."""
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                status, out_headers, content = api.handle(self.command, self.path, headers, body)
                self.send_response(status)
                for key, value in out_headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_PUT = _answer

            def log_message(self, format: str, *args: Any) -> None:
                return None

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, name="fake-api", daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}"
        finally:
            server.shutdown()
            server.server_close()
            thread.join(5)


def _error(status: int, title: str, description: str) -> tuple[int, dict[str, str], bytes]:
    body = json.dumps({"title": title, "description": description}).encode()
    return status, {"Content-Type": "application/json"}, body
