"""Tiny deterministic engines and registries for the archive, store, cache and build tests.

``TinyEngine`` (entry point ``tiny``) scores publications by the number of words
they share with the query and saves itself as plain files in two folders: a JSON
file and a numpy array (so an archive holds a deflated and a stored member). The
other engines fail at one step, to test how failures are reported.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from recsys.config import Settings
from recsys.domain import Publication, Query, Recommendation
from recsys.engine import NULL_PROGRESS, Engine, EngineMetadata, Progress
from recsys.errors import EngineLoadError, SourceError, UnknownPublication
from recsys.registry import GROUP, Registry

HERE = "tests.support.engines"
_WORD = re.compile(r"[a-z]{3,}")


def publications(count: int = 6, *, topic: str = "graph") -> list[Publication]:
    """``count`` small publications, deterministic."""
    return [
        Publication(
            id=f"{topic}-{i}",
            title=f"{topic.title()} study number {i}",
            abstract=f"We study {topic} problems of size {i}. The {topic} results hold for word{i}.",
            label=topic,
            year=2000 + i,
        )
        for i in range(count)
    ]


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


class TinyEngine(Engine):
    name: ClassVar[str] = "tiny"

    def __init__(self, settings: Settings | None = None) -> None:
        super().__init__(settings)
        self.ids: list[str] = []
        self.titles: list[str] = []
        self.texts: list[str] = []
        self.lengths: Any = np.zeros(0, dtype=np.int64)
        self.previous: Path | None = None
        self.closed = False

    def fit(
        self, publications: Sequence[Publication], *, progress: Progress = NULL_PROGRESS, previous: Path | None = None
    ) -> None:
        if not publications:
            raise SourceError("no publications to build from")
        self.ids = [p.id for p in publications]
        self.titles = [p.title for p in publications]
        self.texts = [f"{p.title} {p.abstract}" for p in publications]
        self.lengths = np.array([len(t) for t in self.texts], dtype=np.int64)
        self.previous = previous
        progress("index", len(publications), len(publications))

    def save(self, folder: Path) -> EngineMetadata:
        data = {"ids": self.ids, "titles": self.titles, "texts": self.texts}
        (folder / "publications.json").write_text(json.dumps(data), encoding="utf-8")
        (folder / "index").mkdir()
        np.save(folder / "index" / "lengths.npy", self.lengths, allow_pickle=False)
        extra = {"reused": str(self.previous) if self.previous is not None else None}
        return EngineMetadata(len(self.ids), len(self.ids), model="words", dimension=1, extra=extra)

    @classmethod
    def load(cls, folder: Path, settings: Settings | None = None) -> TinyEngine:
        try:
            data = json.loads((folder / "publications.json").read_text(encoding="utf-8"))
            lengths = np.load(folder / "index" / "lengths.npy", mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise EngineLoadError(f"tiny engine files in {folder} are unusable: {exc}") from exc
        engine = cls(settings)
        engine.ids, engine.titles, engine.texts, engine.lengths = data["ids"], data["titles"], data["texts"], lengths
        return engine

    def recommend(self, query: Query) -> list[Recommendation]:
        if query.publication_id is not None:
            if query.publication_id not in self.ids:
                raise UnknownPublication(f"unknown publication {query.publication_id!r}")
            words = _words(self.texts[self.ids.index(query.publication_id)])
        else:
            words = _words(query.text or "")
        scored = []
        for pub_id, title, text in zip(self.ids, self.titles, self.texts, strict=True):
            if pub_id == query.publication_id or pub_id in query.exclude_ids:
                continue
            score = len(words & _words(text)) / max(len(words), 1)
            if score > 0:
                scored.append(Recommendation(pub_id, title, round(score, 6)))
        scored.sort(key=lambda r: (-r.score, r.publication_id))
        return scored[: query.k]

    @property
    def publication_count(self) -> int:
        return len(self.ids)

    def close(self) -> None:
        self.closed = True


class FailingFitEngine(TinyEngine):
    name: ClassVar[str] = "failing-fit"

    def fit(
        self, publications: Sequence[Publication], *, progress: Progress = NULL_PROGRESS, previous: Path | None = None
    ) -> None:
        raise SourceError("the failing-fit engine refuses every corpus")


class BrokenLoadEngine(TinyEngine):
    """Loads with an unexpected exception (a plugin bug)."""

    name: ClassVar[str] = "broken-load"

    @classmethod
    def load(cls, folder: Path, settings: Settings | None = None) -> TinyEngine:
        raise ValueError("index header is garbled")


class IncompatibleLoadEngine(TinyEngine):
    """Refuses its files with a proper EngineLoadError."""

    name: ClassVar[str] = "incompatible"

    @classmethod
    def load(cls, folder: Path, settings: Settings | None = None) -> TinyEngine:
        raise EngineLoadError("saved with model A, this process has model B")


class BigFileEngine(TinyEngine):
    """Saves an extra incompressible file of ``size`` bytes (for limit tests)."""

    name: ClassVar[str] = "big-file"
    size: ClassVar[int] = 64 * 1024

    def save(self, folder: Path) -> EngineMetadata:
        result = super().save(folder)
        (folder / "blob.bin").write_bytes(np.random.default_rng(0).bytes(self.size))
        return result


ENGINES = {
    "tiny": "TinyEngine",
    "failing-fit": "FailingFitEngine",
    "broken-load": "BrokenLoadEngine",
    "incompatible": "IncompatibleLoadEngine",
    "big-file": "BigFileEngine",
}


def registry(*names: str) -> Registry:
    """A registry of the named test engines (default: all), without distribution."""
    chosen = names or tuple(ENGINES)
    return Registry([metadata.EntryPoint(n, f"{HERE}:{ENGINES[n]}", GROUP) for n in chosen])


def registry_with_distribution(where: Path, version: str = "1.2.3") -> Registry:
    """A registry of every test engine, found through a real ``.dist-info`` folder
    (distribution ``recsys-engine-tiny`` at ``version``) under ``where``."""
    info = where / f"recsys_engine_tiny-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: recsys-engine-tiny\nVersion: {version}\n")
    lines = "".join(f"{name} = {HERE}:{cls}\n" for name, cls in ENGINES.items())
    (info / "entry_points.txt").write_text(f"[{GROUP}]\n{lines}")
    (dist,) = metadata.distributions(path=[str(where)])
    return Registry(dist.entry_points.select(group=GROUP))
