"""JSON request bodies: read within a size limit, decoded strictly.

:func:`read_json` is how every JSON endpoint reads its body:

* ``Content-Type`` must be ``application/json`` (415 otherwise); a ``charset``
  parameter other than ``utf-8`` is a 415 too, as the content is then declared in an
  encoding the API does not take (RFC 8259 allows only UTF-8 between systems).
* The body is read as a stream up to the limit plus one byte, with or without
  ``Content-Length``: a chunked body (``Transfer-Encoding: chunked``) is read to its end
  where the server ends ``wsgi.input`` there (``wsgi.input_terminated``: gunicorn,
  cheroot) and is 411 elsewhere. Past the limit: 413. Empty: 400.
* Only UTF-8: a byte order mark, UTF-16 or UTF-32, or bytes that are not UTF-8 are a
  400 saying which.
* Strict JSON: a key twice in one object, ``NaN``/``Infinity``, or a string holding a
  lone surrogate (``"\\ud800"``) are a 400 naming it.
"""

from __future__ import annotations

import codecs
import json
import re
from typing import Any

import falcon

from recsys import jsontext
from recsys_api.archive_store import Readable
from recsys_api.errors import ApiError, http_error

__all__ = ["body_stream", "read_json"]

_SURROGATE = re.compile("[\ud800-\udfff]")


def _bad(description: str) -> ApiError:
    return http_error("bad_request", description)


def _unsupported(description: str) -> ApiError:
    return ApiError(415, "Unsupported media type", description)


def _check_media_type(req: falcon.Request) -> None:
    media_type, params = falcon.parse_header(req.content_type or "")
    if media_type.lower() != falcon.MEDIA_JSON:
        raise _unsupported(
            f"send the body as JSON with 'Content-Type: application/json' (got {req.content_type or 'none'!r})"
        )
    charset = params.get("charset")
    if charset is not None and charset.strip().lower() != "utf-8":
        raise _unsupported(
            f"the body must be UTF-8: 'Content-Type: application/json' takes no charset other than utf-8 "
            f"(got charset={charset!r}); encode the body as UTF-8 and send 'Content-Type: application/json'"
        )


def body_stream(req: falcon.Request) -> Readable | None:
    """The stream to read the body from, or ``None`` when there is no body.

    ``Content-Length`` bounds the body when it is given; without it the body is read
    to the end of ``wsgi.input`` where the server terminates it (a chunked body under
    gunicorn or cheroot); a chunked body on another server is a 411.
    """
    if req.content_length is not None:
        return req.bounded_stream
    if req.env.get("wsgi.input_terminated"):
        stream: Readable = req.stream
        return stream
    if "chunked" in (req.get_header("Transfer-Encoding") or "").lower():
        raise ApiError(
            411, "Length required",
            "this server cannot read a chunked request body: send it with a Content-Length header",
        )
    return None


def _read(req: falcon.Request, max_bytes: int) -> bytes:
    length = req.content_length
    if length is not None and length > max_bytes:
        raise _too_large(length, max_bytes)
    stream = body_stream(req)
    if stream is None:
        return b""
    chunks: list[bytes] = []
    size = 0
    while size <= max_bytes:
        chunk = stream.read(max_bytes + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > max_bytes:
        raise _too_large(None, max_bytes)
    return b"".join(chunks)


def _too_large(length: int | None, max_bytes: int) -> ApiError:
    got = f" ({length} bytes)" if length is not None else ""
    return ApiError(413, "Request body too large", f"the request body{got} is larger than {max_bytes} bytes")


def _decode(data: bytes) -> str:
    if data.startswith(codecs.BOM_UTF8):
        raise _bad("the request body starts with a UTF-8 byte order mark (EF BB BF): send UTF-8 JSON without a BOM")
    encoding = json.detect_encoding(data)
    if encoding != "utf-8":
        raise _bad(f"the request body is {encoding[:6].upper()}-encoded: send JSON as UTF-8 (RFC 8259)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _bad(
            f"the request body is not valid UTF-8 (byte {exc.start}: {exc.reason}): send JSON as UTF-8"
        ) from exc


def _check_strings(document: Any) -> None:
    """Refuse strings (values or keys) holding a lone surrogate, which is no Unicode character."""
    pending = [document]
    while pending:
        value = pending.pop()
        if isinstance(value, str):
            found = _SURROGATE.search(value)
            if found:
                raise _bad(
                    f"the request body holds a lone surrogate (\\u{ord(found.group()):04x}) in a string: "
                    "escape a character outside the Basic Multilingual Plane as a surrogate pair, or send it as UTF-8"
                )
        elif isinstance(value, dict):
            pending.extend(value)
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)


def read_json(req: falcon.Request, max_bytes: int) -> Any:
    """The request's JSON body, read and decoded by the rules of this module."""
    _check_media_type(req)
    data = _read(req, max_bytes)
    if not data:
        raise _bad("the request body is empty: send a JSON object")
    text = _decode(data)
    try:
        document = jsontext.loads(text)
    except (ValueError, RecursionError) as exc:
        raise _bad(f"the request body is not valid JSON: {exc}") from exc
    _check_strings(document)
    return document
