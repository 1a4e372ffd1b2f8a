"""The worker's client of the API's engine endpoints (see :mod:`recsys.protocol`).

* :meth:`ApiClient.current` — ``GET /v1/engine``: the API's current engine, or None.
* :meth:`ApiClient.download` — ``GET /v1/engine/archive`` streamed into a file,
  hashed and size-checked on the way.
* :meth:`ApiClient.upload` — ``PUT /v1/engine/archive`` with the bearer token,
  streamed from the file, retried with back-off on connection errors, 5xx and 429;
  any other 4xx fails at once with the API's own message.

Failures raise recsys errors: :class:`~recsys.errors.Unavailable` (the API cannot be
reached or answered 5xx), :class:`~recsys.errors.NoEngine` (no engine yet),
:class:`~recsys.errors.InvalidArchive` (a download too large or truncated),
:class:`~recsys.errors.UploadRefused` (the API refused an upload).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from recsys import __version__, protocol
from recsys.errors import ConfigError, InvalidArchive, NoEngine, Unavailable, UploadRefused

__all__ = ["ApiClient", "Download"]

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


@dataclass(frozen=True)
class Download:
    """An archive downloaded into ``path``, with what the API said about it."""

    path: Path
    size: int
    sha256: str
    generation: int | None
    version: str | None
    announced_sha256: str | None


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

    def download(self, dest: Path, *, max_bytes: int) -> Download:
        """Stream the current archive into the new file ``dest``; the caller owns (and
        deletes) it. Raises NoEngine, Unavailable or InvalidArchive (``dest`` removed)."""
        try:
            with dest.open("xb") as out, self._client.stream("GET", "/v1/engine/archive") as response:
                if response.status_code == 404:
                    raise NoEngine(f"the API at {self.base_url} has no engine to download yet")
                if response.status_code != 200:
                    response.read()
                    raise Unavailable(
                        f"GET {self.base_url}/v1/engine/archive answered {response.status_code}: {_describe(response)}"
                    )
                size, digest = self._receive(response, out, max_bytes)
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
    def _receive(response: httpx.Response, out: Any, max_bytes: int) -> tuple[int, str]:
        length_header = response.headers.get("content-length")
        length = int(length_header) if length_header and length_header.isdigit() else None
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
        if length is not None and size != length:
            raise InvalidArchive(f"the archive download is truncated: {size} of {length} bytes arrived")
        return size, digest.hexdigest()

    def upload(self, path: Path) -> dict[str, Any]:
        """PUT the archive at ``path``; returns the API's answer (the new current
        engine with its ``generation``). Raises ConfigError without a token,
        UploadRefused on a 4xx, Unavailable when every attempt failed."""
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
                        "/v1/engine/archive", content=_chunks(body), headers=headers, timeout=timeout
                    )
            except httpx.TransportError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code in (200, 201):
                    return self._json(response)
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

    def _json(self, response: httpx.Response) -> dict[str, Any]:
        try:
            data = response.json()
        except ValueError as exc:
            raise Unavailable(f"the API accepted the archive but its answer is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise Unavailable("the API accepted the archive but its answer is not a JSON object")
        return data


def _chunks(body: Any) -> Iterator[bytes]:
    while chunk := body.read(CHUNK):
        yield chunk
