"""Publication sources: a file (JSON array, JSONL, gzip of either), an HTTP backend,
or the bundled demo corpus.

A source yields :class:`Record` objects: one raw JSON value each, with where it came
from ("line 12", "page 3 item 7") so that a bad record can be named in the log.
:func:`load_publications` turns them into publications: invalid records are
skipped and counted, duplicate ids keep the last record, and a source without any
valid record is a :class:`~recsys.errors.SourceError`. :func:`open_source` picks
the source for a ``RECSYS_SOURCE``/``--source`` value.

Accepted shapes, for files and for each page of the HTTP backend: a JSON array of
records, or a JSON object with the array under one of :data:`WRAPPER_KEYS`. Files
may also be JSON lines (one record per line, streamed), and any file may be
gzip-compressed (detected by its magic bytes, whatever its name).
"""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

from recsys.config import Settings
from recsys.domain import Publication
from recsys.engine import NULL_PROGRESS, Progress
from recsys.errors import InvalidRecord, SourceError
from recsys.sources.base import WRAPPER_KEYS, Record, RecordSource, Source
from recsys.sources.files import DemoSource, FileSource
from recsys.sources.http import HttpSource

__all__ = [
    "LOGGED_INVALID",
    "WRAPPER_KEYS",
    "DemoSource",
    "FileSource",
    "HttpSource",
    "Record",
    "RecordSource",
    "Source",
    "load_publications",
    "open_source",
]

logger = logging.getLogger("recsys.sources")

#: How many invalid records :func:`load_publications` logs one by one.
LOGGED_INVALID = 5


def open_source(spec: str | None, settings: Settings | None = None) -> Source:
    """The source for a ``RECSYS_SOURCE``/``--source`` value.

    None or empty: the demo corpus; ``http(s)://``: the HTTP backend (timeout and
    retries from ``settings``); ``file://`` or a plain path: a file, which must exist.
    """
    if spec is None or not spec.strip():
        return DemoSource()
    spec = spec.strip()
    parts = urlsplit(spec)
    scheme = parts.scheme.lower()
    if scheme in {"http", "https"}:
        settings = settings if settings is not None else Settings()
        return HttpSource(spec, timeout=settings.source_timeout, retries=settings.source_retries)
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise SourceError(f"file URL {spec!r} names a remote host; use a local path")
        path = Path(url2pathname(parts.path))
    elif "://" in spec:
        raise SourceError(f"unsupported publications source {spec!r}: use an http(s):// URL or a file path")
    else:
        path = Path(spec).expanduser()
    if not path.exists():
        raise SourceError(f"publications file {path} does not exist: check RECSYS_SOURCE or --source")
    if not path.is_file():
        raise SourceError(f"publications source {path} is not a file (a JSON, JSONL or .gz file is expected)")
    return FileSource(path)


def load_publications(source: Source, progress: Progress = NULL_PROGRESS) -> list[Publication]:
    """Read every publication of ``source``.

    Invalid records are skipped and counted (the first :data:`LOGGED_INVALID`
    logged with their reason); for a duplicate id the last record wins, in the
    position of that last record. Reports ``progress("fetch", records_read)`` as it
    reads, and ``progress("fetch", read, read)`` once the source is exhausted, so that
    a throttled hook (LogProgress) always shows the final count.
    Raises SourceError when the source fails or has no valid record.
    """
    by_id: dict[str, Publication] = {}
    read = invalid = duplicates = 0
    first_reason = ""
    for record in source.records():
        read += 1
        try:
            publication = record.publication()
        except InvalidRecord as exc:
            invalid += 1
            first_reason = first_reason or str(exc)
            if invalid <= LOGGED_INVALID:
                logger.warning("skipping an invalid record of %s: %s", source.description, exc)
        else:
            if by_id.pop(publication.id, None) is not None:
                duplicates += 1
            by_id[publication.id] = publication
        progress("fetch", read)
    progress("fetch", read, read)  # the last step: its count is always logged and stored
    if invalid > LOGGED_INVALID:
        logger.warning("skipped %d more invalid records of %s", invalid - LOGGED_INVALID, source.description)
    if not by_id:
        detail = f"; the first was rejected because {first_reason}" if first_reason else ""
        raise SourceError(
            f"{source.description} has no valid publication ({read} records read, {invalid} invalid{detail})"
        )
    logger.info(
        "%d publications from %s, %d skipped as invalid, %d duplicate ids (the last of each kept)",
        len(by_id),
        source.description,
        invalid,
        duplicates,
    )
    return list(by_id.values())
