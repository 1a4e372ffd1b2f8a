"""The HTTP source: the publications backend's paginated JSON, fetched with httpx."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

from recsys import __version__
from recsys.errors import SourceError
from recsys.sources.base import Record, RecordSource, record_list

__all__ = ["HttpSource"]

logger = logging.getLogger("recsys.sources")

_SNIPPET_CHARS = 200


class HttpSource(RecordSource):
    """The publications backend: paginated JSON over HTTP(S).

    Each page is a JSON list of records, or an object with the list under one of
    :data:`WRAPPER_KEYS` and the next page's URL under ``next`` (absolute, or
    relative to the page; null or absent ends). Without ``next`` in the body, a
    ``Link: <...>; rel="next"`` header is followed.

    Timeouts, connection errors, 5xx and 429 are retried ``retries`` times per page,
    with exponential backoff and jitter starting at ``backoff`` seconds (at most
    ``max_backoff``); a 429's or 503's ``Retry-After`` is honoured up to
    ``max_retry_after`` seconds. Any other 4xx is a SourceError at once. A ``next``
    URL seen before (a loop) or more than ``max_pages`` pages is a SourceError.
    ``client``: an httpx.Client to use (its lifetime stays with the caller).
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 30.0,
        retries: int = 5,
        client: httpx.Client | None = None,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        max_retry_after: float = 60.0,
        max_pages: int = 10_000,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if urlsplit(url).scheme.lower() not in {"http", "https"}:
            raise SourceError(f"not an http(s):// URL: {url!r}")
        if retries < 0 or max_pages < 1:
            raise ValueError("retries must be >= 0 and max_pages >= 1")
        self.url = url
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_retry_after = max_retry_after
        self.max_pages = max_pages
        self._client = client
        self._sleep = sleep
        self._headers = {"Accept": "application/json", "User-Agent": f"recsys/{__version__}"}
        self.description = f"HTTP backend {_without_password(url)}"

    def records(self) -> Iterator[Record]:
        if self._client is not None:
            yield from self._pages(self._client)
            return
        with httpx.Client(timeout=self.timeout, follow_redirects=True) as client:
            yield from self._pages(client)

    def _pages(self, client: httpx.Client) -> Iterator[Record]:
        url: str | None = self.url
        seen: set[str] = set()
        page = 0
        while url is not None:
            if url in seen:
                raise SourceError(
                    f"pagination loop in {self.description}: page {page} links back to {_without_password(url)}, "
                    "which was already fetched; fix the backend's 'next' links"
                )
            if page >= self.max_pages:
                raise SourceError(
                    f"{self.description} has more than {self.max_pages} pages; "
                    "is its pagination broken? (raise max_pages if it is really that large)"
                )
            seen.add(url)
            page += 1
            response = self._get(client, url)
            body = _json_body(response)
            where = f"page {page} ({_without_password(url)})"
            for number, item in enumerate(record_list(body, where), start=1):
                yield Record(f"page {page} item {number}", item)
            url = _next_url(response, body, where)

    def _get(self, client: httpx.Client, url: str) -> httpx.Response:
        """GET one page, retrying what may be transient."""
        shown = _without_password(url)
        last_error = "no attempt made"
        for attempt in range(self.retries + 1):
            try:
                response = client.get(url, headers=self._headers, timeout=self.timeout)
            except httpx.TimeoutException as exc:
                last_error = f"no answer within {self.timeout:g} s ({type(exc).__name__})"
                delay = self._backoff_delay(attempt)
            except httpx.TransportError as exc:
                last_error = f"{type(exc).__name__}: {exc}"
                delay = self._backoff_delay(attempt)
            except httpx.HTTPError as exc:  # too many redirects, undecodable body, ...
                raise SourceError(f"cannot fetch {shown}: {type(exc).__name__}: {exc}") from exc
            else:
                status = response.status_code
                if 200 <= status < 300:
                    return response
                if status != 429 and status < 500:
                    raise SourceError(
                        f"{shown} answered HTTP {status} {response.reason_phrase}: {_snippet(response)}; "
                        "check the URL (RECSYS_SOURCE) and the backend's access rules"
                    )
                last_error = f"HTTP {status} {response.reason_phrase}"
                delay = self._retry_after(response) or self._backoff_delay(attempt)
            if attempt < self.retries:
                logger.warning(
                    "fetching %s failed (%s); retry %d of %d in %.1f s",
                    shown,
                    last_error,
                    attempt + 1,
                    self.retries,
                    delay,
                )
                self._sleep(delay)
        raise SourceError(f"cannot fetch {shown} after {self.retries + 1} attempt(s); last error: {last_error}")

    def _backoff_delay(self, attempt: int) -> float:
        return min(self.max_backoff, self.backoff * 2.0**attempt) * random.uniform(0.5, 1.0)

    def _retry_after(self, response: httpx.Response) -> float | None:
        """Seconds a 429/503 asks us to wait, capped at ``max_retry_after``; None if absent."""
        value = response.headers.get("Retry-After")
        if value is None or response.status_code not in (429, 503):
            return None
        try:
            seconds = float(value)
        except ValueError:
            try:
                seconds = parsedate_to_datetime(value).timestamp() - time.time()
            except (TypeError, ValueError):
                return None
        return min(max(seconds, 0.0), self.max_retry_after)


def _json_body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError as exc:
        content_type = response.headers.get("Content-Type", "no content type")
        raise SourceError(
            f"{_without_password(str(response.url))} did not answer JSON ({content_type}): {_snippet(response)}"
        ) from exc


def _next_url(response: httpx.Response, body: Any, where: str) -> str | None:
    """The next page: ``next`` in the body (null ends), else a Link rel="next" header."""
    if isinstance(body, dict) and "next" in body:
        target = body["next"]
        if target is None or target == "":
            return None
        if not isinstance(target, str):
            raise SourceError(f"{where} has a 'next' that is not a URL: {target!r}")
    else:
        target = response.links.get("next", {}).get("url")
        if not target:
            return None
    resolved = urljoin(str(response.url), target)
    if urlsplit(resolved).scheme.lower() not in {"http", "https"}:
        raise SourceError(f"{where} links to a next page that is not http(s): {target!r}")
    return resolved


def _snippet(response: httpx.Response) -> str:
    text = " ".join(response.text[: _SNIPPET_CHARS * 2].split())
    if not text:
        return "(empty body)"
    return repr(text[:_SNIPPET_CHARS] + ("…" if len(text) > _SNIPPET_CHARS else ""))


def _without_password(url: str) -> str:
    """``url`` safe for logs: a password in it is replaced by ``***``."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
