"""StubEngine: a tiny deterministic engine for API and worker tests.

It scores by word overlap between sentences, in pure Python (no numpy), and saves
itself as one JSON file. It is exact and deterministic, fast on a few hundred
publications, and follows the whole Engine contract (it passes
:mod:`recsys.testing.conformance`), so tests that need "an engine" can use it
without installing a plugin. It is not meant for real corpora.

Scoring: each sentence is a set of lowercase words (three letters or more, a few
stopwords dropped). For every query sentence, the best Jaccard overlap with any
sentence of a publication is that sentence's match; a publication's score is the
mean of its matches over the query's sentences, and its evidence is the
best-scoring pairs. Publications with score 0 are never returned.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from recsys import refine
from recsys.config import Settings
from recsys.domain import Evidence, Publication, Query, Recommendation
from recsys.engine import NULL_PROGRESS, Engine, EngineMetadata, Progress
from recsys.errors import EngineLoadError, IncompatibleEngine, SourceError, UnknownPublication
from recsys.text import split_sentences

__all__ = ["StubEngine"]

FILE_NAME = "stub.json"
FORMAT = 1
#: Evidence pairs kept per recommendation, best first.
MAX_EVIDENCE = 3

_WORD = re.compile(r"[^\W_]{3,}")
_STOPWORDS = frozenset(
    "and are but for from has have its not our that the their them these this those was were which with".split()
)


def _words(sentence: str) -> frozenset[str]:
    return frozenset(w for w in _WORD.findall(sentence.lower()) if w not in _STOPWORDS)


def publication_sentences(publication: Publication) -> list[str]:
    """The title as one sentence, then the sentences of the abstract and full text."""
    sentences = [" ".join(publication.title.split())]
    sentences += split_sentences(publication.abstract)
    if publication.text:
        sentences += split_sentences(publication.text)
    return [s for s in sentences if s]


@dataclass(frozen=True)
class _Entry:
    id: str
    title: str
    label: str | None
    year: int | None
    sentences: tuple[str, ...]
    words: tuple[frozenset[str], ...]


def _entry(record: dict[str, Any]) -> _Entry:
    sentences = tuple(str(s) for s in record["sentences"])
    year = record.get("year")
    return _Entry(
        id=str(record["id"]),
        title=str(record["title"]),
        label=None if record.get("label") is None else str(record["label"]),
        year=None if year is None else int(year),
        sentences=sentences,
        words=tuple(_words(s) for s in sentences),
    )


class StubEngine(Engine):
    """Word-overlap engine over sentences; saves ``stub.json``. See the module docstring."""

    name: ClassVar[str] = "stub"

    def __init__(self, settings: Settings | None = None) -> None:
        super().__init__(settings)
        self._entries: tuple[_Entry, ...] = ()
        self._by_id: dict[str, int] = {}

    # -- building and files ---------------------------------------------------

    def fit(
        self,
        publications: Sequence[Publication],
        *,
        progress: Progress = NULL_PROGRESS,
        previous: Path | None = None,
    ) -> None:
        if not publications:
            raise SourceError("cannot build the stub engine from no publications: give at least one")
        records = []
        for done, pub in enumerate(publications, start=1):
            records.append(
                {"id": pub.id, "title": pub.title, "label": pub.label, "year": pub.year,
                 "sentences": publication_sentences(pub)}
            )
            progress("split", done, len(publications))
        self._set_entries([_entry(r) for r in records])
        progress("index", len(records), len(records))

    def _set_entries(self, entries: list[_Entry]) -> None:
        by_id: dict[str, int] = {}
        for index, entry in enumerate(entries):
            if entry.id in by_id:
                raise SourceError(f"publication id {entry.id!r} appears twice; give each publication once")
            by_id[entry.id] = index
        self._entries = tuple(entries)
        self._by_id = by_id

    def save(self, folder: Path) -> EngineMetadata:
        if not self._entries:
            raise RuntimeError("StubEngine.save called before fit or load")
        records = [
            {"id": e.id, "title": e.title, "label": e.label, "year": e.year, "sentences": list(e.sentences)}
            for e in self._entries
        ]
        data = {"format": FORMAT, "publications": records}
        (folder / FILE_NAME).write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
        return EngineMetadata(
            publications=len(records), sentences=sum(len(e.sentences) for e in self._entries)
        )

    @classmethod
    def load(cls, folder: Path, settings: Settings | None = None) -> StubEngine:
        path = folder / FILE_NAME
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise EngineLoadError(f"cannot read the stub engine file {path}: {exc}") from exc
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            found = data.get("format") if isinstance(data, dict) else None
            raise IncompatibleEngine(
                f"{path} has stub format {found!r}, this recsys reads format {FORMAT}; rebuild the engine"
            )
        engine = cls(settings)
        try:
            engine._set_entries([_entry(r) for r in data["publications"]])
        except (KeyError, TypeError, ValueError) as exc:
            raise EngineLoadError(f"{path} is malformed ({type(exc).__name__}: {exc}); rebuild the engine") from exc
        return engine

    @property
    def publication_count(self) -> int:
        return len(self._entries)

    # -- queries ----------------------------------------------------------------

    def recommend(self, query: Query) -> list[Recommendation]:
        # like/unlike, min_score, diversity, offset: the generic way, from plain rankings
        return refine.answer(query, self._plain)

    def _plain(self, query: Query) -> list[Recommendation]:
        if query.publication_id is not None:
            index = self._by_id.get(query.publication_id)
            if index is None:
                raise UnknownPublication(
                    f"publication {query.publication_id!r} is not in this engine "
                    f"({len(self._entries)} publications); check the id or rebuild the engine"
                )
            query_sentences = list(self._entries[index].sentences)
        else:
            assert query.text is not None  # Query guarantees text or publication_id
            query_sentences = split_sentences(query.text)
        query_words = [_words(s) for s in query_sentences]
        scored = []
        for index, entry in enumerate(self._entries):
            if not query.accepts(entry.id, entry.label, entry.year):
                continue
            score, evidence = self._score(entry, query_sentences, query_words)
            if score > 0.0:
                scored.append((-score, index, evidence))
        scored.sort(key=lambda item: (item[0], item[1]))
        return [
            Recommendation(
                publication_id=self._entries[i].id, title=self._entries[i].title, score=-neg,
                evidence=evidence, label=self._entries[i].label, year=self._entries[i].year,
            )
            for neg, i, evidence in scored[: query.k]
        ]

    @staticmethod
    def _score(
        entry: _Entry, query_sentences: list[str], query_words: list[frozenset[str]]
    ) -> tuple[float, tuple[Evidence, ...]]:
        if not query_sentences:
            return 0.0, ()
        matches = []
        total = 0.0
        for sentence, words in zip(query_sentences, query_words, strict=True):
            best, best_at = 0.0, -1
            for at, candidate in enumerate(entry.words):
                union = len(words | candidate)
                overlap = len(words & candidate) / union if union else 0.0
                if overlap > best:
                    best, best_at = overlap, at
            total += best
            if best_at >= 0:
                matches.append(Evidence(sentence, entry.sentences[best_at], best))
        matches.sort(key=lambda e: -e.score)
        return total / len(query_sentences), tuple(matches[:MAX_EVIDENCE])
