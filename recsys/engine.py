"""The Engine base class: what every engine plugin implements.

An engine is built from publications (:meth:`Engine.fit`), saved to a folder of
plain files (:meth:`Engine.save`: index files, JSON, numpy arrays, never pickle),
loaded back from such a folder (:meth:`Engine.load`, memory-mapped where the index
allows so that the processes of one machine share it), and asked for
recommendations (:meth:`Engine.recommend`).

A plugin registers its subclass under the entry-point group ``recsys.engines``;
the entry point's name is the engine's name (``Engine.name`` must equal it). See
docs/plugins.md and :mod:`recsys.testing.conformance` for the contract tests.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

from recsys.config import Settings
from recsys.domain import Publication, Query, Recommendation
from recsys.errors import RecsysError

__all__ = ["NULL_PROGRESS", "Engine", "EngineMetadata", "LogProgress", "Progress"]


class Progress(Protocol):
    """Progress hook: ``progress("encode", done=1200, total=5000)``.

    ``stage`` names the step (``fetch``, ``split``, ``encode``, ``index``, ...);
    ``total`` is None when unknown. Engines call it as often as they like;
    implementations throttle their own output.
    """

    def __call__(self, stage: str, done: int, total: int | None = None) -> None: ...


def _null_progress(stage: str, done: int, total: int | None = None) -> None:
    return None


NULL_PROGRESS: Progress = _null_progress


class LogProgress:
    """A Progress that logs each stage's count, rate per second and time left.

    It logs at most every ``interval`` seconds per stage, and always a stage's first
    step and its last (``done == total``: a stage of unknown total reports its end
    with ``total=done``, as :func:`recsys.sources.load_publications` does)::

        encode: 12000/320000 sentences (4.0%), 512/s, about 10m02s left
    """

    def __init__(self, logger: logging.Logger, interval: float = 2.0, units: dict[str, str] | None = None):
        self.logger = logger
        self.interval = interval
        self.units = units or {}
        self._started: dict[str, tuple[float, int]] = {}
        self._last_log: dict[str, float] = {}

    def __call__(self, stage: str, done: int, total: int | None = None) -> None:
        now = time.monotonic()
        started, first_done = self._started.setdefault(stage, (now, done))
        finished = total is not None and done >= total
        # a stage's first step is always logged (a monotonic clock may start near 0)
        if not finished and now - self._last_log.get(stage, float("-inf")) < self.interval:
            return
        self._last_log[stage] = now
        self.logger.info("%s", self.describe(stage, done, total, now - started, done - first_done))

    def describe(self, stage: str, done: int, total: int | None, elapsed: float, advanced: int) -> str:
        unit = self.units.get(stage, "items")
        rate = advanced / elapsed if elapsed > 0 else 0.0
        text = f"{stage}: {done}" + (f"/{total}" if total is not None else "") + f" {unit}"
        if total:
            text += f" ({100.0 * done / total:.1f}%)"
        if rate > 0:
            text += f", {rate:,.0f}/s"
            if total is not None and done < total:
                text += f", about {_duration((total - done) / rate)} left"
        elif total is not None and done >= total:
            text += ", done"
        return text


def _duration(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


@dataclass(frozen=True)
class EngineMetadata:
    """What :meth:`Engine.save` reports about the saved engine; it goes into the
    archive manifest (``model``, ``dimension``, counts) and ``extra`` (engine settings
    such as the embedding backend or the number of trees, plain JSON values)."""

    publications: int
    sentences: int
    model: str | None = None
    dimension: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Engine(ABC):
    """Base class of every engine. Subclasses set :attr:`name` and implement the
    four abstract methods. Instances are used from several threads at once for
    :meth:`recommend`, which must therefore not mutate shared state.
    """

    #: The entry-point name under which the plugin registers this class.
    name: ClassVar[str] = ""

    #: True when ``fit(..., previous=folder)`` builds incrementally: the files of
    #: unchanged publications stay byte-identical, changed and new ones go into new
    #: files, and the answers equal a from-scratch build (docs/plugins.md,
    #: "Delta-capable engines"). It turns on the conformance suite's delta checks.
    supports_delta: ClassVar[bool] = False

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings if settings is not None else Settings()

    @abstractmethod
    def fit(
        self,
        publications: Sequence[Publication],
        *,
        progress: Progress = NULL_PROGRESS,
        previous: Path | None = None,
    ) -> None:
        """Build the engine from every publication.

        ``previous`` is the folder of the engine currently in service, if any, so that
        an engine may reuse work (sentence vectors, say) for unchanged publications.
        It must not be modified. When the input cannot be used, raise a RecsysError
        subclass with a clear message.
        """

    @abstractmethod
    def save(self, folder: Path) -> EngineMetadata:
        """Write the fitted engine into ``folder`` (existing and empty) as plain files."""

    @classmethod
    @abstractmethod
    def load(cls, folder: Path, settings: Settings | None = None) -> Engine:
        """Load an engine saved by :meth:`save`. Raise EngineLoadError (or its subclass
        IncompatibleEngine) with the reason when the files cannot be used here."""

    @abstractmethod
    def recommend(self, query: Query) -> list[Recommendation]:
        """Return up to ``query.k`` recommendations, best first, filters applied.

        Every field of the query counts: ``like``/``unlike``, ``min_score``, ``diversity``
        and ``offset`` too (:mod:`recsys.refine` says what they mean; an engine that can
        rank only plain queries answers the others with ``recsys.refine.answer(query,
        plain)`` where ``plain`` ranks plain
        queries, as the stub engine does). Raise UnknownPublication for a ``publication_id`` (of the
        query or of an example) the engine does not hold. A text that matches nothing
        returns an empty list.
        """

    def recommend_many(self, queries: Sequence[Query]) -> list[list[Recommendation] | RecsysError]:
        """The answers to several queries, in order: each one's recommendations, or the
        RecsysError it failed with (one query's failure does not stop the others).

        The default asks :meth:`recommend` for each; an engine overrides it where work can
        be shared (the default engine encodes every query sentence in one call).
        """
        answers: list[list[Recommendation] | RecsysError] = []
        for query in queries:
            try:
                answers.append(self.recommend(query))
            except RecsysError as exc:
                answers.append(exc)
        return answers

    @property
    @abstractmethod
    def publication_count(self) -> int:
        """Number of publications the engine holds."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release files and memory maps. The default does nothing."""

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
