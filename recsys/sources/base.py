"""The source interface: :class:`Record`, :class:`Source`, and the record shapes."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from recsys.domain import Publication
from recsys.errors import InvalidRecord, SourceError

__all__ = ["WRAPPER_KEYS", "Record", "RecordSource", "Source", "record_list"]

logger = logging.getLogger("recsys.sources")

#: Keys under which a JSON object may hold its list of records.
WRAPPER_KEYS = ("publications", "items", "results", "data")


@dataclass(frozen=True)
class Record:
    """One raw record of a source: the parsed JSON value, or why it could not be parsed."""

    where: str
    data: Any = None
    error: str | None = None

    def publication(self) -> Publication:
        """The publication this record holds; raises InvalidRecord naming ``where``."""
        if self.error is not None:
            raise InvalidRecord(f"{self.where}: {self.error}")
        try:
            return Publication.from_dict(self.data)
        except InvalidRecord as exc:
            raise InvalidRecord(f"{self.where}: {exc}") from exc


class Source(Protocol):
    """Where publications come from.

    ``records()`` yields every raw record in order and raises SourceError when the
    source itself fails (unreadable file, unreachable backend, malformed document);
    iterating the source yields the valid publications only (invalid ones are
    skipped; :func:`load_publications` counts and logs them).
    """

    description: str

    def records(self) -> Iterator[Record]: ...

    def __iter__(self) -> Iterator[Publication]: ...


class RecordSource:
    """Base of the sources here: ``__iter__`` validates what ``records()`` yields."""

    description: str

    def records(self) -> Iterator[Record]:
        raise NotImplementedError(f"{type(self).__name__} must implement records()")

    def __iter__(self) -> Iterator[Publication]:
        for record in self.records():
            try:
                yield record.publication()
            except InvalidRecord as exc:
                logger.debug("skipping an invalid record of %s: %s", self.description, exc)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.description}>"


def record_list(value: Any, where: str) -> list[Any]:
    """The list of records a JSON value holds; SourceError naming ``where`` if none."""
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        for key in WRAPPER_KEYS:
            if isinstance(value.get(key), list):
                return list(value[key])
        raise SourceError(f"{where} is a JSON object without a list of records under any of {', '.join(WRAPPER_KEYS)}")
    raise SourceError(f"{where} is a JSON {type(value).__name__}, expected a list of publications")
