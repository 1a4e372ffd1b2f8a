"""A small publications backend for the end-to-end tests, on 127.0.0.1.

``GET /publications?page=N`` answers ``{"publications": [...], "next": "/publications?page=N+1"}``
(``next`` is null on the last page), the paginated shape :class:`recsys.sources.HttpSource`
follows. The test changes the corpus between builds with :meth:`PublicationsBackend.add`.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["PublicationsBackend", "demo_corpus"]


def demo_corpus() -> list[dict[str, Any]]:
    """The bundled demo corpus, as the backend's JSON records."""
    from recsys.sources import DemoSource, load_publications

    return [publication.to_dict() for publication in load_publications(DemoSource())]


class PublicationsBackend:
    def __init__(self, publications: Iterable[dict[str, Any]], *, page_size: int = 40) -> None:
        self._publications = list(publications)
        self._lock = threading.Lock()
        self.page_size = page_size
        self.pages_served = 0
        #: Seconds each page waits before it is answered (a slow backend).
        self.delay = 0.0
        self._server: ThreadingHTTPServer | None = None

    @property
    def publications(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._publications)

    def add(self, publications: Iterable[dict[str, Any]]) -> None:
        """Add (or replace, by id) publications; the next build sees them."""
        with self._lock:
            new = {p["id"]: p for p in publications}
            self._publications = [p for p in self._publications if p["id"] not in new] + list(new.values())

    def remove(self, ids: Iterable[str]) -> None:
        """Remove publications by id; the next build no longer sees them."""
        with self._lock:
            gone = set(ids)
            self._publications = [p for p in self._publications if p["id"] not in gone]

    def page(self, number: int) -> dict[str, Any]:
        if self.delay:
            time.sleep(self.delay)
        with self._lock:
            start = (number - 1) * self.page_size
            items = self._publications[start:start + self.page_size]
            more = start + self.page_size < len(self._publications)
            self.pages_served += 1
        return {"publications": items, "next": f"/publications?page={number + 1}" if more else None}

    @property
    def url(self) -> str:
        assert self._server is not None, "the backend is not serving"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/publications"

    @contextmanager
    def serve(self) -> Iterator[str]:
        """Serve on a free port in a thread; yields the first page's URL."""
        backend = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                parts = urlsplit(self.path)
                if parts.path != "/publications":
                    self.send_error(404, "only /publications is served")
                    return
                try:
                    number = int(parse_qs(parts.query).get("page", ["1"])[0])
                except ValueError:
                    self.send_error(400, "page must be a number")
                    return
                body = json.dumps(backend.page(max(number, 1))).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        thread = threading.Thread(target=self._server.serve_forever, name="publications-backend", daemon=True)
        thread.start()
        try:
            yield self.url
        finally:
            self._server.shutdown()
            self._server.server_close()
            thread.join(5)
