"""The plain files of a segment, and how they are written and read.

A segment's folder (:mod:`recsys_engine_annoy.segments`; a first-wave engine keeps the
same files at its top, :mod:`recsys_engine_annoy.layout`)::

    publications.jsonl           one {"id", "title", "label", "year"} per publication, in row order
    fingerprints.npy             uint8 [publications, 32]: sha256 of each publication's indexed fields
    sentences.txt                every sentence, one per line (the splitter never leaves a line break)
    sentence_offsets.npy         int64 [sentences + 1]: byte offsets of each line in sentences.txt
    sentence_starts.npy          int64 [publications + 1]: publication p owns sentences starts[p]:starts[p+1]
    sentence_vectors.npy         float16 [sentences, dimension]: unit sentence vectors
    publication_vectors.npy      float32 [publications, dimension]: unit mean vector of each publication
    publications.ann             Annoy (angular) over the publication vectors, only where searched
    sentences.ann                Annoy (angular) over the sentence vectors, only where searched

Large files are memory-mapped when loaded, so every process of a machine shares them.
"""

from __future__ import annotations

import json
import mmap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from recsys.domain import Publication, Query
from recsys.errors import EngineLoadError
from recsys_engine_annoy.files import load_array, save_array

__all__ = [
    "PublicationRecords",
    "PublicationTable",
    "SentenceTexts",
    "Texts",
    "check_rows",
    "write_sentences",
]

PUBLICATIONS_FILE = "publications.jsonl"
FINGERPRINTS_FILE = "fingerprints.npy"
SENTENCES_FILE = "sentences.txt"
OFFSETS_FILE = "sentence_offsets.npy"
STARTS_FILE = "sentence_starts.npy"
SENTENCE_VECTORS_FILE = "sentence_vectors.npy"
PUBLICATION_VECTORS_FILE = "publication_vectors.npy"
SENTENCE_INDEX_FILE = "sentences.ann"
PUBLICATION_INDEX_FILE = "publications.ann"
#: Written by the first-wave engine only (the owner of each sentence: derived from the starts now).
OWNERS_FILE = "sentence_publications.npy"

#: How sentence vectors are stored: half precision halves the files and the archive, and
#: leaves rankings as they are (docs/engine-annoy.md, *float16*).
VECTOR_DTYPE = "float16"


class Texts(Protocol):
    """Sentence texts by row: a list after a build, a memory-mapped file after a load."""

    def __getitem__(self, row: int, /) -> str: ...

    def __len__(self) -> int: ...


def write_sentences(folder: Path, texts: Texts) -> None:
    """Write ``sentences.txt`` (one per line) and the byte offset of each line."""
    offsets = np.zeros(len(texts) + 1, dtype=np.int64)
    with (folder / SENTENCES_FILE).open("wb") as handle:
        position = 0
        for row in range(len(texts)):
            data = texts[row].encode("utf-8")
            if b"\n" in data or b"\r" in data:  # the splitter collapses whitespace; never store a break
                data = b" ".join(data.split())
            handle.write(data + b"\n")
            position += len(data) + 1
            offsets[row + 1] = position
    save_array(folder / OFFSETS_FILE, offsets)


class SentenceTexts:
    """``sentences.txt`` memory-mapped, read by row through its offsets."""

    def __init__(self, folder: Path, count: int) -> None:
        self._offsets = load_array(folder / OFFSETS_FILE, dtype="int64", ndim=1, mmap=True)
        if len(self._offsets) != count + 1:
            raise EngineLoadError(f"{OFFSETS_FILE} lists {len(self._offsets) - 1} sentences, expected {count}")
        path = folder / SENTENCES_FILE
        try:
            with path.open("rb") as handle:
                size = path.stat().st_size
                self._map = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) if size else None
        except OSError as exc:
            raise EngineLoadError(f"cannot read {SENTENCES_FILE}: {exc}; rebuild the engine") from exc
        if int(self._offsets[-1]) != size:
            raise EngineLoadError(f"{SENTENCES_FILE} has {size} bytes, its offsets say {int(self._offsets[-1])}")

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def __getitem__(self, row: int) -> str:
        if self._map is None:
            raise IndexError(row)
        start, end = int(self._offsets[row]), int(self._offsets[row + 1])
        return self._map[start:end - 1].decode("utf-8")

    def close(self) -> None:
        if self._map is not None:
            self._map.close()


@dataclass(frozen=True)
class PublicationRecords:
    """What results and filters show of each publication of a segment, in row order."""

    ids: list[str]
    titles: list[str]
    labels: list[str | None]
    years: list[int | None]

    @classmethod
    def from_publications(cls, pubs: Sequence[Publication]) -> PublicationRecords:
        return cls([p.id for p in pubs], [p.title for p in pubs], [p.label for p in pubs], [p.year for p in pubs])

    @classmethod
    def concat(cls, parts: Iterable[PublicationRecords]) -> PublicationRecords:
        ids: list[str] = []
        titles: list[str] = []
        labels: list[str | None] = []
        years: list[int | None] = []
        for part in parts:
            ids += part.ids
            titles += part.titles
            labels += part.labels
            years += part.years
        return cls(ids, titles, labels, years)

    def take(self, rows: Iterable[int]) -> PublicationRecords:
        picked = list(rows)
        return PublicationRecords([self.ids[r] for r in picked], [self.titles[r] for r in picked],
                                  [self.labels[r] for r in picked], [self.years[r] for r in picked])

    def __len__(self) -> int:
        return len(self.ids)

    def write(self, path: Path) -> None:
        with path.open("w", encoding="utf-8") as handle:
            for row, pid in enumerate(self.ids):
                record = {"id": pid, "title": self.titles[row], "label": self.labels[row], "year": self.years[row]}
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")

    @classmethod
    def read(cls, path: Path, count: int) -> PublicationRecords:
        records = cls([], [], [], [])
        try:
            with path.open(encoding="utf-8") as handle:
                for number, line in enumerate(handle, start=1):
                    record = json.loads(line)
                    if not isinstance(record, dict) or not isinstance(record.get("id"), str):
                        raise ValueError(f"line {number} is not a publication record")
                    records.ids.append(record["id"])
                    records.titles.append(str(record.get("title") or ""))
                    records.labels.append(_opt(record.get("label"), str))
                    records.years.append(_opt(record.get("year"), int))
        except (OSError, ValueError) as exc:
            raise EngineLoadError(f"cannot read {path.name}: {exc}; rebuild the engine") from exc
        if len(records) != count:
            raise EngineLoadError(f"{path.name} lists {len(records)} publications, the engine says {count}")
        if len(set(records.ids)) != len(records.ids):
            raise EngineLoadError(f"{path.name} lists a publication id twice; rebuild the engine")
        return records


class PublicationTable:
    """Per-publication metadata for results and filters over every stored row (rows of
    all segments, one after the other), with the rows that are tombstoned."""

    def __init__(self, records: PublicationRecords, deleted: NDArray[np.int64] | None = None) -> None:
        self.ids = records.ids
        self.titles = records.titles
        self.label_names = sorted({label for label in records.labels if label is not None})
        code = {label: i for i, label in enumerate(self.label_names)}
        self.label_codes = np.array([code[lb] if lb is not None else -1 for lb in records.labels], dtype=np.int32)
        self.years = np.array([y if y is not None else 0 for y in records.years], dtype=np.int32)
        self.has_year = np.array([y is not None for y in records.years], dtype=bool)
        #: Tombstoned rows (sorted); never returned, never queried by id.
        self.deleted = deleted if deleted is not None else np.empty(0, dtype=np.int64)
        self.alive: NDArray[np.bool_] | None = None
        if len(self.deleted):
            self.alive = np.ones(len(self.ids), dtype=bool)
            self.alive[self.deleted] = False
        gone = set(self.deleted.tolist())
        #: The live row of each id.
        self.row_of = {pid: row for row, pid in enumerate(self.ids) if row not in gone}
        if len(self.row_of) != len(self.ids) - len(gone):
            raise EngineLoadError("a publication id is live in two segments; the engine folder is damaged: rebuild it")
        self._label_code = code

    @classmethod
    def from_publications(cls, pubs: Sequence[Publication]) -> PublicationTable:
        return cls(PublicationRecords.from_publications(pubs))

    def __len__(self) -> int:
        """Stored rows, tombstoned ones included."""
        return len(self.ids)

    @property
    def live(self) -> int:
        """Rows that are not tombstoned: the engine's publications."""
        return len(self.ids) - len(self.deleted)

    def label(self, row: int) -> str | None:
        code = int(self.label_codes[row])
        return self.label_names[code] if code >= 0 else None

    def year(self, row: int) -> int | None:
        return int(self.years[row]) if self.has_year[row] else None

    def excluded(self, own_row: int | None) -> NDArray[np.int64]:
        """Rows no query may return (sorted): the tombstoned ones, and a by-id query's own."""
        if own_row is None:
            return self.deleted
        return np.union1d(self.deleted, np.array([own_row], dtype=np.int64)).astype(np.int64)

    def allowed(self, query: Query, own_row: int | None) -> NDArray[np.bool_] | None:
        """Rows that pass the query's filters, are live and are not its own publication;
        None when the query has no filters (then only :meth:`excluded` rows are left out)."""
        if not query.has_filters:
            return None
        mask = np.ones(len(self), dtype=bool) if self.alive is None else self.alive.copy()
        if query.label is not None:
            code = self._label_code.get(query.label)
            mask &= self.label_codes == (code if code is not None else -2)
        if query.year_min is not None:
            mask &= self.has_year & (self.years >= query.year_min)
        if query.year_max is not None:
            mask &= self.has_year & (self.years <= query.year_max)
        for pid in query.hidden_ids:
            row = self.row_of.get(pid)
            if row is not None:
                mask[row] = False
        if own_row is not None:
            mask[own_row] = False
        return mask


def _opt(value: Any, kind: type) -> Any:
    if value is None:
        return None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ValueError(f"unexpected value {value!r}")
    return value


def check_rows(name: str, array: NDArray[np.generic], rows: int, columns: Iterable[int] = ()) -> None:
    """Raise EngineLoadError unless ``array`` has ``rows`` rows (and the given trailing shape)."""
    expected = (rows, *columns)
    if array.shape != expected:
        raise EngineLoadError(f"{name} has shape {array.shape}, expected {expected}; the engine folder is damaged")
