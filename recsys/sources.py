"""Publication sources: a file (JSON array, JSONL, gzip of either), an HTTP backend,
or the bundled demo corpus.

INTERFACE STUB — implementation pending (see the docstrings for the contract).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from recsys.config import Settings
from recsys.domain import Publication
from recsys.engine import NULL_PROGRESS, Progress

__all__ = ["DemoSource", "FileSource", "HttpSource", "Source", "load_publications", "open_source"]


class Source(Protocol):
    """Yields every valid publication; invalid records are skipped and counted in the
    log; raises SourceError when the source fails or yields no valid record."""

    description: str

    def __iter__(self) -> Iterator[Publication]: ...


class FileSource:
    def __init__(self, path: str) -> None:
        raise NotImplementedError


class HttpSource:
    def __init__(self, url: str, *, timeout: float = 30.0, retries: int = 5) -> None:
        raise NotImplementedError


class DemoSource:
    def __init__(self) -> None:
        raise NotImplementedError


def open_source(spec: str | None, settings: Settings | None = None) -> Source:
    """DemoSource for None, HttpSource for http(s):// URLs, FileSource otherwise."""
    raise NotImplementedError


def load_publications(source: Source, progress: Progress = NULL_PROGRESS) -> list[Publication]:
    """Read every publication (duplicate ids: the last one wins, counted in the log);
    raises SourceError when none is valid."""
    raise NotImplementedError
