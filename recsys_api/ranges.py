"""Serving a file's bytes: conditional requests and byte ranges (RFC 9110, 13 and 14).

:func:`serve_file` answers ``GET`` and ``HEAD`` for a file whose bytes never change
under its entity tag (a blob named by its sha256; an engine version's full archive,
tagged by its version and assembled the same way every time):

* ``If-None-Match`` naming the tag (weak comparison, or ``*``) → 304 without a body;
* one range, ``Range: bytes=N-``, ``bytes=N-M`` or ``bytes=-S`` (the last S bytes) →
  206 with ``Content-Range: bytes N-M/<size>`` (M past the end means the end);
* a range that starts at or past the end (or any range of an empty file, or
  ``bytes=-0``) → 416 with ``Content-Range: bytes */<size>`` and a JSON error;
* a ``Range`` that does not parse, asks for several ranges, or counts another unit
  → the whole file (RFC 9110 lets a server ignore it, and a client gets more, not less);
* ``If-Range`` with the tag (strong comparison) lets the range apply; any other
  value (another tag, a weak one, a date: these files send no ``Last-Modified``)
  → the whole file, 200, so a client never joins pieces of two different files;
* otherwise 200 with the whole file.

Every answer has ``ETag``, ``Accept-Ranges: bytes`` and the given ``Cache-Control``.
A body is streamed from the open file (:class:`FileSlice`: gunicorn sends it with
``sendfile``, other servers read it in chunks); ``HEAD`` closes it at once.
"""

from __future__ import annotations

import re
from typing import BinaryIO

import falcon

from recsys_api.errors import ApiError

__all__ = ["UNSATISFIABLE", "FileSlice", "byte_range", "serve_file"]

#: What :func:`byte_range` returns for a range that selects no byte of the file.
UNSATISFIABLE = "unsatisfiable"

_DIGITS = re.compile(r"^[0-9]{1,19}$")


class FileSlice:
    """``length`` bytes of an open file from ``start``: what Falcon streams.

    ``fileno`` lets gunicorn ``sendfile`` from the file's current offset (``start``)
    exactly ``Content-Length`` bytes; ``read`` never goes past the slice.
    """

    def __init__(self, fp: BinaryIO, start: int, length: int) -> None:
        fp.seek(start)
        self._fp = fp
        self._left = length

    def read(self, size: int | None = -1) -> bytes:
        if self._left <= 0:
            return b""
        wanted = self._left if size is None or size < 0 else min(size, self._left)
        data = self._fp.read(wanted)
        self._left -= len(data)
        return data

    def fileno(self) -> int:
        return self._fp.fileno()

    def close(self) -> None:
        self._fp.close()


def byte_range(header: str, size: int) -> tuple[int, int] | str | None:
    """The (first, last) byte positions ``header`` asks for in a file of ``size``
    bytes, :data:`UNSATISFIABLE`, or None to send the whole file (see the module)."""
    unit, equals, spec = header.partition("=")
    if not equals or unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    first, last = first.strip(), last.strip()
    if not dash:
        return None
    if not first:  # the last `last` bytes
        if not _DIGITS.match(last):
            return None
        suffix = int(last)
        if suffix == 0 or size == 0:
            return UNSATISFIABLE
        return max(0, size - suffix), size - 1
    if not _DIGITS.match(first) or (last and not _DIGITS.match(last)):
        return None
    start = int(first)
    if last and int(last) < start:
        return None  # invalid, so ignored (RFC 9110, 14.1.1)
    if start >= size:
        return UNSATISFIABLE
    end = min(int(last), size - 1) if last else size - 1
    return start, end


def _none_match(req: falcon.Request, tag: str) -> bool:
    tags = req.if_none_match
    return tags is not None and any(t == "*" or str(t) == tag for t in tags)


def _range_applies(req: falcon.Request, tag: str) -> bool:
    """``If-Range`` absent, or naming this very tag (strong: not ``W/``)."""
    condition = req.get_header("If-Range")
    return condition is None or condition.strip() == f'"{tag}"'


def serve_file(
    req: falcon.Request, resp: falcon.Response, fp: BinaryIO, size: int, *, tag: str, cache_control: list[str],
    content_type: str = "application/octet-stream",
) -> int:
    """Answer ``req`` (GET or HEAD) with the file ``fp`` of ``size`` bytes (see the
    module); ``fp`` is closed, or handed to Falcon to stream and close. Returns the
    body bytes set (0 for HEAD and 304); raises the 416 ApiError."""
    resp.etag = tag
    resp.accept_ranges = "bytes"
    resp.cache_control = cache_control
    if _none_match(req, tag):
        fp.close()
        resp.status = falcon.HTTP_304
        return 0
    start, length = 0, size
    header = req.get_header("Range")
    if header is not None and _range_applies(req, tag):
        wanted = byte_range(header, size)
        if wanted == UNSATISFIABLE:
            fp.close()
            raise ApiError(
                416, "Range not satisfiable",
                f"the range {header[:100]!r} selects no byte of this file of {size} bytes",
                headers={"Content-Range": f"bytes */{size}"},
            )
        if isinstance(wanted, tuple):
            start, end = wanted
            length = end - start + 1
            resp.status = falcon.HTTP_206
            resp.content_range = (start, end, size)
    resp.content_type = content_type
    if req.method == "HEAD":
        fp.close()
        resp.content_length = length
        return 0
    resp.set_stream(FileSlice(fp, start, length), length)
    return length
