"""The worker's client of the API's engine endpoints (see :mod:`recsys.protocol`).

* :meth:`ApiClient.current` — ``GET /v1/engine``: the API's current engine, or None.
* :meth:`ApiClient.fetch_manifest` — ``GET /v1/engine/files/{manifest_sha256}``: a
  version's manifest bytes, checked against their sha256; or :class:`NotServed` when
  the API does not serve it (``first_wave``: the API has no files endpoint at all).
* :meth:`ApiClient.fetch_file` — ``GET /v1/engine/files/{sha256}`` streamed into the
  machine's blob store, resuming an interrupted download with ``Range`` (a 200 to a
  range request starts again from zero), checked before it becomes a blob.
* :meth:`ApiClient.download` — ``GET /v1/engine/archive`` streamed into a file,
  hashed and size-checked on the way (a first-wave API, which serves no files).
* :meth:`ApiClient.upload` — ``PUT /v1/engine/archive`` with the bearer token,
  streamed from the file, retried with back-off on connection errors, 5xx and 429;
  any other 4xx fails at once with the API's own message (a thin archive whose
  left-out files the API lacks: :class:`~recsys.errors.MissingFiles`).

Failures raise recsys errors: :class:`~recsys.errors.Unavailable` (the API cannot be
reached or answered 5xx), :class:`~recsys.errors.NoEngine` (no engine yet),
:class:`~recsys.errors.InvalidArchive` (a download too large, truncated, or whose
bytes do not match its name), :class:`~recsys.errors.InvalidTarget` (the API no
longer serves a file of the version being installed),
:class:`~recsys.errors.UploadRefused` (the API refused an upload). Writing a download
to a full disk raises the ``OSError`` (the partial download stays, for the next
attempt to resume).
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from recsys import __version__, protocol
from recsys.archive import MAX_MANIFEST_BYTES
from recsys.blobs import BlobStore, PartialBlob
from recsys.changes import PushedSet
from recsys.errors import (
    ConfigError,
    InvalidArchive,
    InvalidTarget,
    MissingFiles,
    NoEngine,
    Unavailable,
    UploadRefused,
)

__all__ = ["ApiClient", "Download", "Fetched", "NotServed"]

logger = logging.getLogger(__name__)

CHUNK = 1024 * 1024
#: Seconds to connect to the API; to wait for each read of a normal call.
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 60.0
#: Seconds the API may take to check and store an uploaded archive before answering.
UPLOAD_READ_TIMEOUT = 600.0
#: Attempts of an upload, and the back-off before each retry (seconds, doubling).
UPLOAD_ATTEMPTS = 6
UPLOAD_BACKOFF = 1.0
UPLOAD_BACKOFF_MAX = 30.0
#: Requests for one file when its download breaks off (each resumes where the last stopped).
FILE_ATTEMPTS = 3
FILES_PATH = "/v1/engine/files/"

_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+)$")


def _ignore(count: int) -> None:
    return None


@dataclass(frozen=True)
class Download:
    """An archive downloaded into ``path``, with what the API said about it."""

    path: Path
    size: int
    sha256: str
    generation: int | None
    version: str | None
    announced_sha256: str | None


@dataclass(frozen=True)
class NotServed:
    """The API answered 404 or 405 for a file. ``first_wave``: it has no files endpoint
    at all (a first-wave API: 405, or a 404 without an error code); otherwise it does
    not keep that file (any more)."""

    first_wave: bool
    status: int
    message: str


@dataclass(frozen=True)
class Fetched:
    """A file received into the blob store: ``received`` bytes by this call, after
    ``resumed`` bytes already on disk from an interrupted attempt."""

    received: int
    resumed: int


@dataclass
class _Receiving:
    """A file being received: the partial blob written to, and the bytes received so far."""

    blob: PartialBlob
    received: int = 0


def _code(response: httpx.Response) -> str | None:
    """The error ``code`` of a JSON error body, None when there is none."""
    try:
        body = response.json()
    except ValueError:
        return None
    code = body.get("code") if isinstance(body, dict) else None
    return code if isinstance(code, str) else None


def _describe(response: httpx.Response) -> str:
    """The API's error message: Falcon's ``{"title", "description"}``, else the text."""
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip()
        return text[:300] if text else response.reason_phrase
    if isinstance(body, dict):
        parts = [str(body[k]) for k in ("title", "description") if body.get(k)]
        if parts:
            return ": ".join(parts)
    return str(body)[:300]


def _retry_after(response: httpx.Response | None, default: float) -> float:
    if response is None:
        return default
    try:
        return min(UPLOAD_BACKOFF_MAX, max(0.0, float(response.headers.get("retry-after", default))))
    except ValueError:
        return default


class ApiClient:
    """HTTP client of the API at ``base_url``. Thread-safe (one pooled httpx client)."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Any = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self._sleep = sleep
        self._client = httpx.Client(
            base_url=self.base_url,
            timeout=httpx.Timeout(READ_TIMEOUT, connect=CONNECT_TIMEOUT),
            headers={"User-Agent": f"recsys-worker/{__version__}"},
            transport=transport,
        )

    def close(self) -> None:
        self._client.close()

    def _unreachable(self, what: str, exc: Exception) -> Unavailable:
        return Unavailable(f"the API at {self.base_url} is unreachable ({what}): {type(exc).__name__}: {exc}")

    def current(self) -> dict[str, Any] | None:
        """The API's current engine (manifest + generation, sha256, size), None before the first."""
        try:
            response = self._client.get("/v1/engine")
        except httpx.HTTPError as exc:
            raise self._unreachable("GET /v1/engine", exc) from exc
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise Unavailable(f"GET {self.base_url}/v1/engine answered {response.status_code}: {_describe(response)}")
        try:
            data = response.json()
        except ValueError as exc:
            raise Unavailable(f"GET {self.base_url}/v1/engine did not answer JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise Unavailable(f"GET {self.base_url}/v1/engine answered {type(data).__name__}, not an object")
        return data

    def download(
        self,
        dest: Path,
        *,
        max_bytes: int,
        on_bytes: Callable[[int], None] = _ignore,
        on_length: Callable[[int | None], None] | None = None,
    ) -> Download:
        """Stream the current archive into the new file ``dest``; the caller owns (and
        deletes) it. Raises NoEngine, Unavailable or InvalidArchive (``dest`` removed).
        ``on_length`` is told the announced size, ``on_bytes`` each chunk's."""
        try:
            with dest.open("xb") as out, self._client.stream("GET", "/v1/engine/archive") as response:
                if response.status_code == 404:
                    raise NoEngine(f"the API at {self.base_url} has no engine to download yet")
                if response.status_code != 200:
                    response.read()
                    raise Unavailable(
                        f"GET {self.base_url}/v1/engine/archive answered {response.status_code}: {_describe(response)}"
                    )
                size, digest = self._receive(response, out, max_bytes, on_bytes, on_length)
                headers = response.headers
        except httpx.HTTPError as exc:
            dest.unlink(missing_ok=True)
            raise self._unreachable("GET /v1/engine/archive", exc) from exc
        except BaseException:
            dest.unlink(missing_ok=True)
            raise
        generation = headers.get(protocol.HEADER_GENERATION)
        return Download(
            path=dest,
            size=size,
            sha256=digest,
            generation=int(generation) if generation and generation.isdigit() else None,
            version=headers.get(protocol.HEADER_VERSION) or (headers.get("etag") or "").strip('"') or None,
            announced_sha256=headers.get(protocol.HEADER_SHA256),
        )

    @staticmethod
    def _receive(
        response: httpx.Response,
        out: Any,
        max_bytes: int,
        on_bytes: Callable[[int], None],
        on_length: Callable[[int | None], None] | None,
    ) -> tuple[int, str]:
        length = _length(response)
        if on_length is not None:
            on_length(length)
        if length is not None and length > max_bytes:
            raise InvalidArchive(
                f"the API's archive is {length} bytes, more than RECSYS_ARCHIVE_MAX_BYTES={max_bytes}"
            )
        digest = hashlib.sha256()
        size = 0
        for chunk in response.iter_bytes(CHUNK):
            size += len(chunk)
            if size > max_bytes:
                raise InvalidArchive(f"the API's archive is larger than RECSYS_ARCHIVE_MAX_BYTES={max_bytes}")
            digest.update(chunk)
            out.write(chunk)
            on_bytes(len(chunk))
        if length is not None and size != length:
            raise InvalidArchive(f"the archive download is truncated: {size} of {length} bytes arrived")
        return size, digest.hexdigest()

    def fetch_manifest(self, sha256: str) -> bytes | NotServed:
        """The manifest bytes of the version ``sha256`` names, checked against it
        (InvalidArchive otherwise), or :class:`NotServed`. Raises Unavailable."""
        url = FILES_PATH + sha256
        try:
            with self._client.stream("GET", url) as response:
                if response.status_code in (404, 405):
                    response.read()
                    return NotServed(first_wave=response.status_code == 405 or _code(response) is None,
                                     status=response.status_code, message=_describe(response))
                if response.status_code != 200:
                    response.read()
                    raise Unavailable(
                        f"GET {self.base_url}{url} answered {response.status_code}: {_describe(response)}"
                    )
                chunks, size = [], 0
                for chunk in response.iter_bytes(CHUNK):
                    size += len(chunk)
                    if size > MAX_MANIFEST_BYTES:
                        raise InvalidArchive(
                            f"the manifest {sha256} the API serves is larger than {MAX_MANIFEST_BYTES} bytes"
                        )
                    chunks.append(chunk)
        except httpx.HTTPError as exc:
            raise self._unreachable(f"GET {url}", exc) from exc
        data = b"".join(chunks)
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            raise InvalidArchive(
                f"the manifest the API served as {sha256} has sha256 {actual} ({len(data)} bytes): refused"
            )
        return data

    def fetch_file(
        self, sha256: str, size: int, blobs: BlobStore, *, on_bytes: Callable[[int], None] = _ignore
    ) -> Fetched:
        """Download blob ``sha256`` of ``size`` bytes into ``blobs`` (the caller holds the
        store's lock), resuming a partial download from an earlier attempt with
        ``Range: bytes=<offset>-``; a download that breaks off is resumed at once, up to
        :data:`FILE_ATTEMPTS` requests. ``on_bytes`` is told the bytes on disk as they
        grow (the resumed ones first; a negative count when a download starts again).

        Raises InvalidArchive (bytes that do not match the name: deleted), InvalidTarget
        (404: the API does not keep this file), Unavailable, or the OSError of a write
        (a full disk: what arrived stays for the next attempt).
        """
        url = FILES_PATH + sha256
        state = _Receiving(blobs.partial(sha256, size))
        resumed, attempt = state.blob.offset, 0
        if resumed:
            on_bytes(resumed)
            logger.info("resuming the download of file %s at %d of %d bytes", sha256[:12], resumed, size)
        try:
            while state.blob.offset < size:
                attempt += 1
                try:
                    self._receive_blob(url, blobs, state, on_bytes)
                except httpx.TransportError as exc:
                    if attempt >= FILE_ATTEMPTS:
                        raise self._unreachable(
                            f"GET {url}, {attempt} attempts, {state.blob.offset} of {size} bytes on disk", exc
                        ) from exc
                    logger.warning("the download of file %s broke off at %d of %d bytes (%s: %s); resuming",
                                   sha256[:12], state.blob.offset, size, type(exc).__name__, exc)
                else:
                    if state.blob.offset < size and attempt >= FILE_ATTEMPTS:
                        raise Unavailable(
                            f"GET {self.base_url}{url} ended early {attempt} times ({state.blob.offset} of {size} "
                            "bytes); the next attempt resumes"
                        )
            state.blob.finish()
        except BaseException:
            with suppress(OSError):  # a full disk may refuse the last flush too
                state.blob.close()
            raise
        return Fetched(state.received, resumed)

    def _receive_blob(
        self, url: str, blobs: BlobStore, state: _Receiving, on_bytes: Callable[[int], None]
    ) -> None:
        """One request for the rest of ``state.blob`` (replaced by a new one when the API
        sends the whole file again)."""
        blob = state.blob
        offset, size = blob.offset, blob.size
        headers = {"Range": f"bytes={offset}-", "If-Range": f'"{blob.sha256}"'} if offset else {}
        with self._client.stream("GET", url, headers=headers) as response:
            status = response.status_code
            if status == 416 or (status == 200 and offset):  # start again from zero
                if status == 416:
                    response.read()
                logger.info("the API sent file %s from its start (HTTP %d to a range request); "
                            "dropping the %d bytes on disk", blob.sha256[:12], status, offset)
                blob.discard()
                on_bytes(-offset)
                blob = state.blob = blobs.partial(blob.sha256, size)
                if status == 416:
                    return
                offset = 0
            elif status == 404:
                response.read()
                raise InvalidTarget(
                    f"the API does not serve file {blob.sha256} of the version being installed (HTTP 404: "
                    f"{_describe(response)}); a newer version probably replaced it: the next rollout follows that"
                )
            elif status == 206:
                _check_range(response, offset, size, blob.sha256)
            elif status != 200:
                response.read()
                raise Unavailable(f"GET {self.base_url}{url} answered {status}: {_describe(response)}")
            length = _length(response)
            if length is not None and length != size - offset:
                raise InvalidArchive(
                    f"the API announced {length} bytes for file {blob.sha256} from byte {offset}, "
                    f"but the file has {size - offset} left"
                )
            for chunk in response.iter_bytes(CHUNK):
                blob.write(chunk)
                state.received += len(chunk)
                on_bytes(len(chunk))

    def upload(self, path: Path, *, force: bool = False) -> dict[str, Any]:
        """PUT the archive at ``path`` (``force``: ``?force=true``, past the quality gate);
        returns the API's answer (the new current engine with its ``generation``). Raises
        ConfigError without a token, UploadRefused on a 4xx, Unavailable when every attempt failed."""
        if not self.token:
            raise ConfigError("RECSYS_API_TOKEN is empty: a worker needs the API's token to upload a built engine")
        size = path.stat().st_size
        headers = {
            "Authorization": f"Bearer {self.token}",
            "Content-Type": "application/zip",
            "Content-Length": str(size),
        }
        timeout = httpx.Timeout(UPLOAD_READ_TIMEOUT, connect=CONNECT_TIMEOUT)
        delay = UPLOAD_BACKOFF
        problem = ""
        for attempt in range(1, UPLOAD_ATTEMPTS + 1):
            response: httpx.Response | None = None
            try:
                with path.open("rb") as body:
                    response = self._client.put(
                        "/v1/engine/archive", content=_chunks(body), headers=headers, timeout=timeout,
                        params={"force": "true"} if force else None,
                    )
            except httpx.TransportError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code in (200, 201):
                    return self._json(response)
                if response.status_code == 409 and _code(response) == "missing_files":
                    body = response.json()
                    missing = body.get("missing") if isinstance(body, dict) else None
                    raise MissingFiles(
                        f"the API lacks files the thin archive {path.name} leaves out: {_describe(response)}",
                        [m for m in missing if isinstance(m, dict)] if isinstance(missing, list) else [],
                    )
                if response.status_code != 429 and response.status_code < 500:
                    raise UploadRefused(
                        f"the API refused the archive {path.name} ({size} bytes) with HTTP {response.status_code}: "
                        f"{_describe(response)}"
                    )
                problem = f"HTTP {response.status_code}: {_describe(response)}"
            if attempt < UPLOAD_ATTEMPTS:
                wait = _retry_after(response, delay)
                logger.warning("upload of %s failed (attempt %d/%d, %s); retrying in %.0f s",
                               path.name, attempt, UPLOAD_ATTEMPTS, problem, wait)
                self._sleep(wait)
                delay = min(UPLOAD_BACKOFF_MAX, delay * 2)
        raise Unavailable(
            f"could not upload {path.name} to {self.base_url}/v1/engine/archive after {UPLOAD_ATTEMPTS} attempts "
            f"(last: {problem}); the archive was built but not installed anywhere: start a new build when the API "
            "is back"
        )

    def pushed(self) -> PushedSet:
        """``GET /v1/publications/pushed``: the pushed publication changes to merge into a
        build's corpus; an empty set from an API without live updates (a 404 without
        code). Raises ConfigError without a token, Unavailable otherwise."""
        if not self.token:
            raise ConfigError("RECSYS_API_TOKEN is empty: a worker needs the API's token to read pushed publications")
        try:
            response = self._client.get("/v1/publications/pushed", headers={"Authorization": f"Bearer {self.token}"},
                                        timeout=httpx.Timeout(UPLOAD_READ_TIMEOUT, connect=CONNECT_TIMEOUT))
        except httpx.HTTPError as exc:
            raise self._unreachable("GET /v1/publications/pushed", exc) from exc
        if response.status_code == 404 and _code(response) is None:
            return PushedSet(0, {}, frozenset(), ())
        if response.status_code != 200:
            raise Unavailable(f"GET {self.base_url}/v1/publications/pushed answered {response.status_code}: "
                              f"{_describe(response)}")
        try:
            return PushedSet.from_dict(response.json())
        except ValueError as exc:
            raise Unavailable(f"GET {self.base_url}/v1/publications/pushed answered an unusable body: {exc}") from exc

    def report_refused(self, changes_through: int, reason: str) -> int:
        """``POST /v1/publications/changes/refused``: the pending changes up to
        ``changes_through`` could not be applied; returns how many the API marked."""
        try:
            response = self._client.post(
                "/v1/publications/changes/refused", json={"changes_through": changes_through, "reason": reason},
                headers={"Authorization": f"Bearer {self.token or ''}"},
            )
        except httpx.HTTPError as exc:
            raise self._unreachable("POST /v1/publications/changes/refused", exc) from exc
        if response.status_code != 200:
            raise Unavailable(f"POST {self.base_url}/v1/publications/changes/refused answered "
                              f"{response.status_code}: {_describe(response)}")
        body = response.json()
        return int(body.get("refused", 0)) if isinstance(body, dict) else 0

    def _json(self, response: httpx.Response) -> dict[str, Any]:
        try:
            data = response.json()
        except ValueError as exc:
            raise Unavailable(f"the API accepted the archive but its answer is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise Unavailable("the API accepted the archive but its answer is not a JSON object")
        return data


def _length(response: httpx.Response) -> int | None:
    header = response.headers.get("content-length")
    return int(header) if header and header.isdigit() else None


def _check_range(response: httpx.Response, offset: int, size: int, sha256: str) -> None:
    """A 206 must carry the bytes asked for: ``Content-Range: bytes <offset>-<size-1>/<size>``."""
    header = response.headers.get("content-range", "")
    match = _CONTENT_RANGE.match(header.strip())
    if match is None or (int(match[1]), int(match[2]), int(match[3])) != (offset, size - 1, size):
        raise InvalidArchive(
            f"the API answered a request for file {sha256} from byte {offset} with Content-Range {header!r}, "
            f"not 'bytes {offset}-{size - 1}/{size}'"
        )


def _chunks(body: Any) -> Iterator[bytes]:
    while chunk := body.read(CHUNK):
        yield chunk
