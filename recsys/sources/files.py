"""File sources: a JSON array, a JSON object wrapping one, or JSON lines, optionally
gzipped; and the demo corpus shipped in the package."""

from __future__ import annotations

import gzip
import io
import json
import os
import zlib
from collections.abc import Iterable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any

from recsys.errors import InvalidDocument, SourceError
from recsys.sources.base import WRAPPER_KEYS, Record, RecordSource, record_list

__all__ = ["DemoSource", "FileSource", "parse_records"]

_GZIP_MAGIC = b"\x1f\x8b"
_BOM = b"\xef\xbb\xbf"


class FileSource(RecordSource):
    """A JSON array, a JSON object wrapping one, or JSON lines; optionally gzipped.

    JSON lines are streamed one line at a time; a JSON document is parsed whole.
    A line that is not valid JSON is an invalid record (skipped and counted); a JSON
    document that does not parse is a SourceError.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.description = f"file {self.path}"

    def records(self) -> Iterator[Record]:
        try:
            with open(self.path, "rb") as raw:
                yield from parse_records(raw, self.description)
        except FileNotFoundError as exc:
            raise SourceError(f"publications file {self.path} does not exist: check RECSYS_SOURCE or --source") from exc
        except (OSError, EOFError, zlib.error) as exc:  # unreadable, or a corrupt/truncated gzip
            raise SourceError(f"cannot read publications file {self.path}: {exc}") from exc


class DemoSource(RecordSource):
    """The demo corpus shipped inside the package (``recsys/data/demo_publications.jsonl``)."""

    RESOURCE = "data/demo_publications.jsonl"

    def __init__(self) -> None:
        self.description = "the bundled demo corpus"

    def records(self) -> Iterator[Record]:
        try:
            data = resources.files("recsys").joinpath(self.RESOURCE).read_bytes()
        except OSError as exc:
            raise SourceError(
                f"the demo corpus recsys/{self.RESOURCE} is missing from the installed package: "
                "reinstall recsys, or set RECSYS_SOURCE to a publications file or URL"
            ) from exc
        yield from _parse_stream(io.BytesIO(data), self.description)


def parse_records(raw: io.BufferedReader, name: str) -> Iterator[Record]:
    """The records of an open binary stream holding a JSON document or JSON lines,
    gzipped or not (told by its first bytes, peeked: standard input works too)."""
    stream: io.BufferedIOBase = gzip.GzipFile(fileobj=raw, mode="rb") if raw.peek(2)[:2] == _GZIP_MAGIC else raw
    yield from _parse_stream(stream, name)


def _parse_stream(stream: io.BufferedIOBase, name: str) -> Iterator[Record]:
    """Records of a JSON document or of JSON lines, told apart by the first line."""
    lines = enumerate(stream, start=1)
    for number, line in lines:
        if number == 1:
            line = line.removeprefix(_BOM)
        if line.strip():
            break
    else:
        raise SourceError(f"{name} is empty: expected a JSON array, a JSON object or JSON lines")
    first = line.lstrip()[:1]
    if first == b"[":
        yield from _document(line + stream.read(), name)
    elif first == b"{":
        try:
            value = json.loads(line)
        except ValueError:  # an object over several lines: a JSON document, or bad JSON lines
            data = line + stream.read()
            try:
                yield from _document(data, name)
            except InvalidDocument:
                yield from _json_lines(enumerate(data.splitlines(), start=number))
        else:
            yield from _expand(value, f"line {number}")
            yield from _json_lines(lines)
    else:
        raise SourceError(f"{name} is neither JSON nor JSON lines: it starts with {line[:20]!r}")


def _document(data: bytes, name: str) -> Iterator[Record]:
    try:
        value = json.loads(data)
    except ValueError as exc:
        raise InvalidDocument(f"{name} is not valid JSON: {exc}") from exc
    for number, item in enumerate(record_list(value, name), start=1):
        yield Record(f"item {number}", item)


def _json_lines(lines: Iterable[tuple[int, bytes]]) -> Iterator[Record]:
    for number, line in lines:
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError as exc:  # includes bad UTF-8
            yield Record(f"line {number}", error=f"not valid JSON ({exc})")
            continue
        yield from _expand(value, f"line {number}")


def _expand(value: Any, where: str) -> Iterator[Record]:
    """A JSON line is one record, unless it is a wrapper object holding a list of them."""
    if isinstance(value, dict) and "id" not in value:
        for key in WRAPPER_KEYS:
            items = value.get(key)
            if isinstance(items, list):
                for number, item in enumerate(items, start=1):
                    yield Record(f"{where} item {number}", item)
                return
    yield Record(where, value)
