"""The engine folder: which plain files hold what, and how they are written and read.

::

    engine.json                  EngineInfo: format, model (name, sha256), backend,
                                 dimension, counts, index settings
    publications.jsonl           one {"id", "title", "label", "year"} per publication, in row order
    sentences.txt                every sentence, one per line (the splitter never leaves a line break)
    sentence_offsets.npy         int64 [sentences + 1]: byte offsets of each line in sentences.txt
    sentence_starts.npy          int64 [publications + 1]: publication p owns sentences starts[p]:starts[p+1]
    sentence_publications.npy    int32 [sentences]: the publication row of each sentence
    sentence_vectors.npy         float16 [sentences, dimension]: unit sentence vectors
    publication_vectors.npy      float32 [publications, dimension]: unit mean vector of each publication
    sentences.ann                Annoy (angular) over the sentence vectors; item = sentence row
    publications.ann             Annoy (angular) over the publication vectors; item = publication row

Large files are memory-mapped when loaded, so every process of a machine shares them.
"""

from __future__ import annotations

import json
import mmap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from recsys.domain import Publication, Query
from recsys.errors import EngineLoadError
from recsys_engine_annoy.ann import AnnSettings
from recsys_engine_annoy.files import load_array, save_array

__all__ = [
    "FORMAT",
    "EngineInfo",
    "PublicationTable",
    "SentenceTexts",
    "Texts",
    "read_info",
    "write_sentences",
]

FORMAT = 1
INFO_FILE = "engine.json"
PUBLICATIONS_FILE = "publications.jsonl"
SENTENCES_FILE = "sentences.txt"
OFFSETS_FILE = "sentence_offsets.npy"
STARTS_FILE = "sentence_starts.npy"
OWNERS_FILE = "sentence_publications.npy"
SENTENCE_VECTORS_FILE = "sentence_vectors.npy"
PUBLICATION_VECTORS_FILE = "publication_vectors.npy"
SENTENCE_INDEX_FILE = "sentences.ann"
PUBLICATION_INDEX_FILE = "publications.ann"

#: How sentence vectors are stored: half precision halves the files and the archive,
#: and changes cosines by less than 1e-3 (docs/engine-annoy.md).
VECTOR_DTYPE = "float16"


@dataclass(frozen=True)
class EngineInfo:
    """``engine.json``: what the saved engine is and how it was made."""

    model: str
    model_sha256: str
    backend: str
    dimension: int
    publications: int
    sentences: int
    sentence_index: AnnSettings
    publication_index: AnnSettings
    vector_dtype: str = VECTOR_DTYPE
    versions: dict[str, str] = field(default_factory=dict)
    format: int = FORMAT

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "model": self.model,
            "model_sha256": self.model_sha256,
            "backend": self.backend,
            "dimension": self.dimension,
            "publications": self.publications,
            "sentences": self.sentences,
            "vector_dtype": self.vector_dtype,
            "sentence_index": self.sentence_index.to_dict(),
            "publication_index": self.publication_index.to_dict(),
            "versions": self.versions,
        }

    @classmethod
    def from_dict(cls, data: Any, where: str = INFO_FILE) -> EngineInfo:
        """Parse and check ``engine.json``; EngineLoadError says which field is wrong."""
        if not isinstance(data, dict):
            raise EngineLoadError(f"{where} is not a JSON object; rebuild the engine")
        if data.get("format") != FORMAT:
            raise EngineLoadError(
                f"{where} has format {data.get('format')!r}; this plugin reads format {FORMAT}: rebuild the engine "
                "or install the plugin version that built it"
            )
        try:
            info = cls(
                model=_field(data, "model", str),
                model_sha256=_field(data, "model_sha256", str),
                backend=_field(data, "backend", str),
                dimension=_field(data, "dimension", int),
                publications=_field(data, "publications", int),
                sentences=_field(data, "sentences", int),
                sentence_index=_ann(_field(data, "sentence_index", dict)),
                publication_index=_ann(_field(data, "publication_index", dict)),
                vector_dtype=_field(data, "vector_dtype", str),
                versions={str(k): str(v) for k, v in dict(data.get("versions") or {}).items()},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise EngineLoadError(f"{where} is malformed: {exc}; rebuild the engine") from exc
        if info.dimension <= 0 or info.publications <= 0 or info.sentences < info.publications:
            raise EngineLoadError(f"{where} has impossible counts or dimension; rebuild the engine")
        return info


def _field(data: dict[str, Any], name: str, kind: type) -> Any:
    if name not in data:
        raise KeyError(f"missing {name!r}")
    value = data[name]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise TypeError(f"{name!r} must be a {kind.__name__}, got {type(value).__name__}")
    return value


def _ann(data: dict[str, Any]) -> AnnSettings:
    return AnnSettings(trees=int(data["trees"]), search_k=int(data["search_k"]), exact=bool(data.get("exact")))


def read_info(folder: Path) -> EngineInfo:
    path = folder / INFO_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EngineLoadError(
            f"{folder} holds no {INFO_FILE}: it is not a saved 'annoy' engine (or it is incomplete)"
        ) from None
    except (OSError, ValueError) as exc:
        raise EngineLoadError(f"cannot read {path}: {exc}; rebuild the engine") from exc
    return EngineInfo.from_dict(data)


def write_info(folder: Path, info: EngineInfo) -> None:
    (folder / INFO_FILE).write_text(json.dumps(info.to_dict(), indent=2) + "\n", encoding="utf-8")


class Texts(Protocol):
    """Sentence texts by row: a list after a build, a memory-mapped file after a load."""

    def __getitem__(self, row: int, /) -> str: ...

    def __len__(self) -> int: ...


def write_sentences(folder: Path, texts: Sequence[str]) -> None:
    """Write ``sentences.txt`` (one per line) and the byte offset of each line."""
    offsets = np.zeros(len(texts) + 1, dtype=np.int64)
    with (folder / SENTENCES_FILE).open("wb") as handle:
        position = 0
        for row, text in enumerate(texts):
            data = text.encode("utf-8")
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


class PublicationTable:
    """Per-publication metadata for results and filters: ids, titles, labels, years."""

    def __init__(self, ids: list[str], titles: list[str], labels: list[str | None], years: list[int | None]) -> None:
        self.ids = ids
        self.titles = titles
        self.label_names = sorted({label for label in labels if label is not None})
        code = {label: i for i, label in enumerate(self.label_names)}
        self.label_codes = np.array([code[lb] if lb is not None else -1 for lb in labels], dtype=np.int32)
        self.years = np.array([y if y is not None else 0 for y in years], dtype=np.int32)
        self.has_year = np.array([y is not None for y in years], dtype=bool)
        self.row_of = {pid: row for row, pid in enumerate(ids)}
        self._label_code = code

    @classmethod
    def from_publications(cls, pubs: Sequence[Publication]) -> PublicationTable:
        return cls([p.id for p in pubs], [p.title for p in pubs], [p.label for p in pubs], [p.year for p in pubs])

    def __len__(self) -> int:
        return len(self.ids)

    def label(self, row: int) -> str | None:
        code = int(self.label_codes[row])
        return self.label_names[code] if code >= 0 else None

    def year(self, row: int) -> int | None:
        return int(self.years[row]) if self.has_year[row] else None

    def allowed(self, query: Query, own_row: int | None) -> NDArray[np.bool_] | None:
        """Rows that pass the query's filters (and are not its own publication); None
        when every row passes."""
        if not query.has_filters and own_row is None:
            return None
        mask = np.ones(len(self), dtype=bool)
        if query.label is not None:
            code = self._label_code.get(query.label)
            mask &= self.label_codes == (code if code is not None else -2)
        if query.year_min is not None:
            mask &= self.has_year & (self.years >= query.year_min)
        if query.year_max is not None:
            mask &= self.has_year & (self.years <= query.year_max)
        for pid in query.exclude_ids:
            row = self.row_of.get(pid)
            if row is not None:
                mask[row] = False
        if own_row is not None:
            mask[own_row] = False
        return mask

    def write(self, path: Path) -> None:
        with path.open("w", encoding="utf-8") as handle:
            for row, pid in enumerate(self.ids):
                record = {"id": pid, "title": self.titles[row], "label": self.label(row), "year": self.year(row)}
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")

    @classmethod
    def read(cls, path: Path, count: int) -> PublicationTable:
        ids: list[str] = []
        titles: list[str] = []
        labels: list[str | None] = []
        years: list[int | None] = []
        try:
            with path.open(encoding="utf-8") as handle:
                for number, line in enumerate(handle, start=1):
                    record = json.loads(line)
                    if not isinstance(record, dict) or not isinstance(record.get("id"), str):
                        raise ValueError(f"line {number} is not a publication record")
                    ids.append(record["id"])
                    titles.append(str(record.get("title") or ""))
                    labels.append(_opt(record.get("label"), str))
                    years.append(_opt(record.get("year"), int))
        except (OSError, ValueError) as exc:
            raise EngineLoadError(f"cannot read {path.name}: {exc}; rebuild the engine") from exc
        if len(ids) != count:
            raise EngineLoadError(f"{path.name} lists {len(ids)} publications, engine.json says {count}")
        if len(set(ids)) != len(ids):
            raise EngineLoadError(f"{path.name} lists a publication id twice; rebuild the engine")
        return cls(ids, titles, labels, years)


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
