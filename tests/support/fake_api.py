"""A fake of the API's engine endpoints, for worker tests (see recsys.protocol and
docs/workers.md).

:class:`FakeApi` keeps engine versions in memory, content-addressed as the real API
does (a blob per file and per manifest), and answers:

* ``GET /v1/engine``: the current manifest + ``generation``, ``installed_at``,
  ``manifest_sha256``, ``bytes``, and the full archive's ``sha256`` / ``size``;
* ``GET``/``HEAD /v1/engine/files/{sha256}``: a blob of a stored version, with
  ``ETag``, ``Range`` (206 / 416), ``If-Range`` and ``If-None-Match`` (304); an unknown
  name is a 404 with code ``unknown_file``;
* ``GET /v1/engine/archive``: the full archive (assembled with
  ``recsys.archive.write_archive`` from the blobs, so a thin upload serves full too);
* ``PUT /v1/engine/archive``: full or thin archives (bearer token; 409 for an archive
  not newer than the current one; 409 ``missing_files`` for a thin one leaving out a
  file the fake does not hold).

``first_wave = True`` makes it the API of the first wave: no ``manifest_sha256`` in
``GET /v1/engine``, no files endpoint (a Falcon 404 without an error code), thin
archives refused. It is reachable in-process (:meth:`FakeApi.transport`, an httpx
MockTransport) or over HTTP (:meth:`FakeApi.serve`, a threaded http.server), counts
what it serves, and lets tests corrupt what it serves, cut a download off, ignore
ranges, forget a version, and script upload failures.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import threading
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import httpx

from recsys import protocol
from recsys.archive import VerifiedArchive, verify, write_archive
from recsys.changes import ChangeLog
from recsys.errors import InvalidArchive, MissingFiles
from recsys.manifest import Manifest

TOKEN = "test-token"
FILES = "/v1/engine/files/"
_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


@dataclass
class Stored:
    generation: int
    version: str
    created_at: str
    manifest: dict[str, Any]
    data: bytes
    sha256: str
    manifest_bytes: bytes = b""
    manifest_sha256: str = ""
    installed_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    def info(self, *, first_wave: bool = False, archive_known: bool = True) -> dict[str, Any]:
        info = dict(self.manifest, generation=self.generation, installed_at=self.installed_at,
                    sha256=self.sha256 if archive_known or first_wave else None,
                    size=len(self.data) if archive_known or first_wave else None)
        if not first_wave:
            info["manifest_sha256"] = self.manifest_sha256
            info["bytes"] = sum(f["size"] for f in self.manifest["files"]) + len(self.manifest_bytes)
        return info

    @property
    def files(self) -> dict[str, str]:
        """path -> sha256 of the version's files."""
        return {f["path"]: f["sha256"] for f in self.manifest["files"]}


@dataclass
class Cut:
    """A body that breaks off after ``data`` (the connection drops)."""

    data: bytes


@dataclass
class Stall:
    """A body that stops after ``data[:at]`` until ``gate`` opens, then sends the rest."""

    data: bytes
    at: int
    gate: threading.Event


Answer = tuple[int, dict[str, str], "bytes | Cut | Stall"]


class FakeApi:
    def __init__(self, token: str = TOKEN) -> None:
        self.token = token
        self._lock = threading.Lock()
        self.current: Stored | None = None
        self.archives: dict[str, Stored] = {}
        self.blobs: dict[str, bytes] = {}
        self.generation = 0
        #: A first-wave API: no manifest_sha256, no files endpoint, no thin uploads.
        self.first_wave = False
        #: When False, GET /v1/engine has sha256/size null (the full archive not assembled yet).
        self.archive_known = True
        self.downloads = 0  # GET /v1/engine/archive
        self.uploads = 0
        #: GET /v1/engine/files/{sha}: requests per sha256 (manifests included), bytes served.
        self.file_requests: Counter[str] = Counter()
        self.file_bytes = 0
        #: (sha256, first byte) of each Range request served.
        self.ranges: list[tuple[str, int]] = []
        #: What each accepted upload carried: {"version", "thin", "files", "bytes", "force"}.
        self.uploaded: list[dict[str, Any]] = []
        #: When set, GET /v1/engine/archive serves these bytes instead (a corruption).
        self.serve_instead: bytes | None = None
        #: GET /v1/engine/files/{sha}: serve these bytes instead for that sha (a corruption).
        self.corrupt: dict[str, bytes] = {}
        #: GET /v1/engine/files/{sha}: break the next download of sha off after this many bytes
        #: (every download of it while ``cut_forever``).
        self.cut: dict[str, int] = {}
        self.cut_forever = False
        #: GET /v1/engine/files/{sha}: send this many bytes of sha, then wait for the event.
        self.stall: dict[str, tuple[int, threading.Event]] = {}
        #: GET /v1/engine/files/{sha}: answer this status for that sha (e.g. 503).
        self.fail_files: dict[str, int] = {}
        #: Answer 200 with the whole file to Range requests (a server without ranges).
        self.ignore_range = False
        #: When set, every files request answers this status (e.g. 405, 503).
        self.files_status: int | None = None
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
        #: Live updates: when set, a real change log behind GET /v1/publications/pushed and
        #: POST /v1/publications/changes/refused, following each upload (None: an API without them).
        self.changes: ChangeLog | None = None
        #: Bodies of POST /v1/publications/changes/refused.
        self.refused: list[dict[str, Any]] = []

    # -- test controls -------------------------------------------------------------

    def publish(self, archive: Path) -> Stored:
        """Make ``archive`` (full, or thin with the other files held here) current with
        the next generation, as an accepted upload."""
        verified = verify(archive, have=self._holds)
        return self._store(archive, verified)

    def rollback(self, version: str) -> Stored:
        """Make an earlier version current again, as a new generation."""
        with self._lock:
            old = self.archives[version]
            self.generation += 1
            self.current = Stored(self.generation, old.version, old.created_at, old.manifest, old.data, old.sha256,
                                  old.manifest_bytes, old.manifest_sha256)
            return self.current

    def forget(self, version: str) -> None:
        """Drop a version and the blobs no other version uses (the API pruned it)."""
        with self._lock:
            gone = self.archives.pop(version)
            used = {sha for stored in self.archives.values() for sha in [*stored.files.values(),
                                                                          stored.manifest_sha256]}
            for sha in [*gone.files.values(), gone.manifest_sha256]:
                if sha not in used:
                    self.blobs.pop(sha, None)

    @property
    def pulls(self) -> int:
        """Rollouts served: full archive downloads plus manifest fetches (one per machine each)."""
        manifests = {stored.manifest_sha256 for stored in self.archives.values()}
        return self.downloads + sum(count for sha, count in self.file_requests.items() if sha in manifests)

    def fetched(self, stored: Stored) -> Counter[str]:
        """Requests for each file path of ``stored`` (manifest excluded)."""
        return Counter({path: self.file_requests[sha] for path, sha in stored.files.items()
                        if self.file_requests[sha]})

    # -- the endpoints ---------------------------------------------------------------

    def handle(self, method: str, path: str, headers: Any, body: bytes) -> Answer:
        path, _, query = path.partition("?")
        if path == "/v1/engine" and method == "GET":
            current = self.current
            if current is None:
                return _error(404, "Not Found", "no engine yet", code="no_engine")
            info = current.info(first_wave=self.first_wave, archive_known=self.archive_known)
            return 200, {"Content-Type": "application/json"}, json.dumps(info).encode()
        if path.startswith(FILES) and method in ("GET", "HEAD"):
            return self._file(method, path[len(FILES):], headers)
        if path == "/v1/engine/archive" and method == "GET":
            with self._lock:
                current = self.current
                if current is None:
                    return _error(404, "Not Found", "no engine yet", code="no_engine")
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
            return self._upload(headers, body, force="force=true" in query.split("&"))
        if path == "/publications" and method == "GET":
            return self._publications()
        if path.startswith("/v1/publications/") and self.changes is not None:
            if headers.get("authorization") != f"Bearer {self.token}":
                return _error(401, "Unauthorized", "a bearer token is required")
            if path == "/v1/publications/pushed" and method == "GET":
                return 200, {"Content-Type": "application/json"}, json.dumps(self.changes.pushed().to_dict()).encode()
            if path == "/v1/publications/changes/refused" and method == "POST":
                data = json.loads(body)
                self.refused.append(data)
                count = self.changes.mark_refused(data["changes_through"], data["reason"])
                return 200, {"Content-Type": "application/json"}, json.dumps({"refused": count}).encode()
        return _error(404, "404 Not Found", f"{method} {path}")

    def _file(self, method: str, sha: str, headers: Any) -> Answer:
        if self.first_wave:
            return _error(404, "404 Not Found", f"{method} {FILES}{sha}")  # Falcon's: no code
        if self.files_status is not None:
            return _error(self.files_status, "Scripted failure", f"answering {self.files_status} as told")
        with self._lock:
            data = self.blobs.get(sha)
            if method == "GET":
                self.file_requests[sha] += 1
        if data is None:
            return _error(404, "Not Found", f"no file {sha} in any kept version", code="unknown_file")
        if sha in self.fail_files:
            return _error(self.fail_files[sha], "Scripted failure", f"answering {self.fail_files[sha]} as told")
        data = self.corrupt.get(sha, data)
        etag = f'"{sha}"'
        base = {"Content-Type": "application/octet-stream", "ETag": etag, "Accept-Ranges": "bytes",
                "Cache-Control": "public, max-age=31536000, immutable"}
        if headers.get("if-none-match") == etag:
            return 304, base, b""
        status, start, end = 200, 0, len(data)
        wanted = headers.get("range")
        if wanted and not self.ignore_range and headers.get("if-range", etag) == etag:
            match = _RANGE.match(wanted)
            if match is None or int(match[1]) >= len(data):
                return 416, dict(base, **{"Content-Range": f"bytes */{len(data)}"}), b""
            start = int(match[1])
            end = min(len(data), int(match[2]) + 1) if match[2] else len(data)
            status = 206
            base["Content-Range"] = f"bytes {start}-{end - 1}/{len(data)}"
            with self._lock:
                self.ranges.append((sha, start))
        part = data[start:end]
        base["Content-Length"] = str(len(part))
        if method == "HEAD":
            return status, base, b""
        with self._lock:
            limit = self.cut.get(sha) if self.cut_forever else self.cut.pop(sha, None)
            served = part if limit is None else part[:limit]
            self.file_bytes += len(served)
            stall = self.stall.get(sha)
        if stall is not None:
            return status, base, Stall(part, stall[0], stall[1])
        return status, base, (part if limit is None else Cut(served))

    def _publications(self) -> Answer:
        with self._lock:
            self.publication_requests += 1
        gate = self.publications_gate
        if gate is not None:
            gate.wait(120)
        if self.publications_status is not None:
            return _error(self.publications_status, "Backend failure", "the publications backend is failing")
        return 200, {"Content-Type": "application/json"}, json.dumps(self.publications).encode()

    def _upload(self, headers: Any, body: bytes, *, force: bool = False) -> Answer:
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
                verified = verify(path, have=None if self.first_wave else self._holds)
            except MissingFiles as exc:
                return _error(409, "Missing files", str(exc), code="missing_files", missing=exc.missing)
            except InvalidArchive as exc:
                return _error(400, "Invalid archive", str(exc), code="invalid_archive")
            current = self.current
            if current is not None and verified.manifest.created_at <= current.created_at:
                return _error(409, "Not newer", "the archive is not newer than the current one", code="not_newer")
            stored = self._store(path, verified)
        with self._lock:
            self.uploads += 1
            self.uploaded.append({"version": stored.version, "thin": verified.thin, "files": len(verified.members),
                                  "bytes": len(body), "force": force})
        if self.changes is not None:
            self.changes.reconcile(stored.generation, stored.manifest.get("changes_through"))
        if self.on_upload is not None:
            self.on_upload(stored)
        return 201, {"Content-Type": "application/json"}, json.dumps(stored.info(first_wave=self.first_wave)).encode()

    def _holds(self, entry: Any) -> bool:
        data = self.blobs.get(entry.sha256)
        return data is not None and len(data) == entry.size

    def _store(self, archive: Path, verified: VerifiedArchive) -> Stored:
        manifest: Manifest = verified.manifest
        with zipfile.ZipFile(archive) as opened:
            carried = {entry.sha256: opened.read(entry.path) for entry in manifest.files
                       if entry.path in verified.members}
        with self._lock:
            self.blobs.update(carried)
            self.blobs[verified.manifest_sha256] = verified.manifest_bytes
            with TemporaryDirectory() as tmp:
                full = write_archive(Path(tmp) / "full.zip", verified.manifest_bytes, manifest,
                                     lambda entry: io.BytesIO(self.blobs[entry.sha256]))
                data = full.path.read_bytes()
            self.generation += 1
            stored = Stored(self.generation, manifest.version, manifest.created_at, manifest.to_dict(), data,
                            hashlib.sha256(data).hexdigest(), verified.manifest_bytes, verified.manifest_sha256)
            self.archives[stored.version] = stored
            self.current = stored
        return stored

    # -- transports ------------------------------------------------------------------

    def transport(self) -> httpx.MockTransport:
        def handler(request: httpx.Request) -> httpx.Response:
            body = request.read()
            target = request.url.raw_path.decode("ascii")  # with the query
            status, headers, content = self.handle(request.method, target, request.headers, body)
            if isinstance(content, Cut):
                return httpx.Response(status, headers=headers, content=_breaking(content.data))
            if isinstance(content, Stall):
                return httpx.Response(status, headers=headers, content=_stalling(content))
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
                if "Content-Length" not in out_headers:
                    self.send_header("Content-Length", str(len(content) if isinstance(content, bytes) else 0))
                self.end_headers()
                if self.command == "HEAD":
                    return
                if isinstance(content, Cut):
                    self.wfile.write(content.data)
                    self.wfile.flush()
                    self.close_connection = True  # the client sees the body end early
                    return
                if isinstance(content, Stall):
                    try:
                        for chunk in _stalling(content):
                            self.wfile.write(chunk)
                            self.wfile.flush()
                    except OSError:  # the client went away (killed) while we waited
                        self.close_connection = True
                    return
                self.wfile.write(content)

            do_GET = do_PUT = do_HEAD = _answer

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


def _stalling(stall: Stall) -> Iterator[bytes]:
    yield stall.data[: stall.at]
    stall.gate.wait(120)
    yield stall.data[stall.at :]


def _breaking(data: bytes) -> Iterator[bytes]:
    yield data
    raise httpx.ReadError("the connection was cut (a fault injected by the test)")


def _error(status: int, title: str, description: str, *, code: str | None = None, **extra: Any) -> Answer:
    body: dict[str, Any] = {"title": title, "description": description}
    if code is not None:
        body["code"] = code
    body.update(extra)
    return status, {"Content-Type": "application/json"}, json.dumps(body).encode()
