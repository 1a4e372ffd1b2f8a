"""Conformance tests for delta-capable engines (``Engine.supports_delta = True``).

:class:`DeltaConformance` is a base of :class:`recsys.testing.conformance.EngineConformance`,
so every plugin's conformance class has these tests; they skip unless the engine class
says ``supports_delta = True``. They use only the Engine API and the hashes of the saved
files, so any engine can run them:

1. build on the conformance corpus less two publications, save (``previous``);
2. change the corpus: add those two, replace one (same id, another publication's
   abstract), delete one (:func:`delta_case`); build with ``previous=`` that folder, save;
3. check that the incremental engine (fitted, and loaded back) ranks like a build from
   scratch over the changed corpus (text and by-id queries, several k: the same ids in
   the same order, scores within 1e-5; :func:`recsys.testing.checks.diff_rankings`), that
   the deleted publication is never returned and its id is ``UnknownPublication``, that
   the new and replaced publications are found by their own text, that the files new or
   changed (path + sha256 not in ``previous``) hold less than half of the engine's bytes,
   and that no file under ``previous`` changed;
4. rebuild on the unchanged corpus with ``previous`` = the incremental folder: every file
   in a subfolder (the segments) is kept with the same path and sha256 and none is added
   there; only top-level files (a small state file) may change, and the answers stay.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest

from recsys.config import Settings
from recsys.domain import MAX_K, Publication, Query
from recsys.engine import Engine, EngineMetadata
from recsys.errors import UnknownPublication
from recsys.testing import checks
from recsys.testing.probes import spread

__all__ = ["DeltaBuild", "DeltaCase", "DeltaConformance", "delta_case", "delta_queries"]

#: The largest share of an incremental engine's bytes that may be new after the change.
MAX_NEW_SHARE = 0.5

#: How far down the ranking a new or replaced publication must come for its own text.
FOUND_WITHIN = 3


@dataclass(frozen=True)
class DeltaCase:
    """A corpus change: ``base`` (before) becomes ``corpus`` (after) by adding ``added``,
    replacing one publication by ``replaced`` (same id, other content) and deleting ``deleted``."""

    base: list[Publication]
    corpus: list[Publication]
    added: tuple[Publication, ...]
    replaced: Publication
    deleted: Publication


def delta_case(corpus: list[Publication]) -> DeltaCase:
    """The change the delta tests make to ``corpus`` (at least 8 publications)."""
    if len(corpus) < 8:
        raise ValueError("the delta tests need a corpus of at least 8 publications")
    picks = spread(corpus, 8)
    added = (picks[1], picks[5])
    deleted, target, donor = picks[3], picks[6], picks[2]
    replaced = dataclasses.replace(target, abstract=donor.abstract, text=donor.text)
    held = {p.id for p in added}
    base = [p for p in corpus if p.id not in held]
    changed = [replaced if p.id == target.id else p for p in base if p.id != deleted.id] + list(added)
    return DeltaCase(base, changed, added, replaced, deleted)


def _text(pub: Publication) -> str:
    return checks.sentence_text([pub.title, pub.abstract])


def delta_queries(case: DeltaCase) -> list[Query]:
    """Text and by-id queries over the changed corpus, with several k, that touch the
    added, replaced and deleted publications."""
    picks = spread(case.corpus, 6)
    texts = [_text(p) for p in (*picks[:3], *case.added, case.replaced, case.deleted)]
    texts.append(checks.sentence_text(p.title for p in spread(case.corpus, 12)))
    ids = [p.id for p in (*picks[3:], *case.added, case.replaced)]
    queries = [Query(text=text, k=k) for text in texts for k in (1, 5, 10)]
    queries += [Query(publication_id=i, k=k) for i in ids for k in (1, 5, 10)]
    queries.append(Query(text=texts[-1], k=MAX_K))
    queries.append(Query(publication_id=ids[0], k=MAX_K))
    return queries


@dataclass(frozen=True)
class DeltaBuild:
    """The incremental build: ``previous`` and its file hashes before and after the build,
    the fitted engine, the saved folder and its metadata."""

    previous: Path
    before: checks.FileHashes
    after: checks.FileHashes
    engine: Engine
    folder: Path
    metadata: EngineMetadata


class DeltaConformance:
    """The delta tests; mixed into EngineConformance (see the module docstring)."""

    engine_class: ClassVar[type[Engine]]

    @pytest.fixture(scope="class")
    @classmethod
    def delta_case(cls, corpus: list[Publication]) -> DeltaCase:
        if not cls.engine_class.supports_delta:
            pytest.skip(f"{cls.engine_class.__name__}.supports_delta is False: no incremental builds to check")
        return delta_case(corpus)

    @pytest.fixture(scope="class")
    @classmethod
    def delta_build(
        cls, delta_case: DeltaCase, engine_settings: Settings, tmp_path_factory: pytest.TempPathFactory
    ) -> DeltaBuild:
        previous = tmp_path_factory.mktemp("delta-previous")
        with cls.engine_class(engine_settings) as base:
            base.fit(delta_case.base)
            base.save(previous)
        before = checks.file_hashes(previous)
        engine = cls.engine_class(engine_settings)
        engine.fit(delta_case.corpus, previous=previous)
        folder = tmp_path_factory.mktemp("delta-incremental")
        metadata = engine.save(folder)
        return DeltaBuild(previous, before, checks.file_hashes(previous), engine, folder, metadata)

    @pytest.fixture(scope="class")
    @classmethod
    def delta_loaded(cls, delta_build: DeltaBuild, engine_settings: Settings) -> Iterator[Engine]:
        engine = cls.engine_class.load(delta_build.folder, engine_settings)
        yield engine
        engine.close()

    @pytest.fixture(scope="class")
    @classmethod
    def delta_expected(cls, delta_case: DeltaCase, engine_settings: Settings) -> list[checks.Answer]:
        with cls.engine_class(engine_settings) as scratch:
            scratch.fit(delta_case.corpus)
            return [checks.answer(scratch, q) for q in delta_queries(delta_case)]

    def test_delta_ranks_like_a_build_from_scratch(
        self, delta_case: DeltaCase, delta_build: DeltaBuild, delta_loaded: Engine, delta_expected: list[checks.Answer]
    ) -> None:
        queries = delta_queries(delta_case)
        for name, engine in (("fitted", delta_build.engine), ("loaded", delta_loaded)):
            problems = checks.diff_rankings(delta_expected, [checks.answer(engine, q) for q in queries])
            assert not problems, (
                f"the {name} incremental engine ranks unlike a build from scratch:\n" + "\n".join(problems)
            )

    def test_delta_counts_the_changed_corpus(
        self, delta_case: DeltaCase, delta_build: DeltaBuild, delta_loaded: Engine
    ) -> None:
        want = len(delta_case.corpus)
        assert delta_build.engine.publication_count == want, f"fitted: {delta_build.engine.publication_count}"
        assert delta_loaded.publication_count == want, f"loaded: {delta_loaded.publication_count} of {want}"
        assert delta_build.metadata.publications == want, f"metadata: {delta_build.metadata.publications}"

    def test_delta_never_returns_the_deleted_publication(self, delta_case: DeltaCase, delta_loaded: Engine) -> None:
        gone = delta_case.deleted.id
        for query in [*delta_queries(delta_case), Query(text=_text(delta_case.deleted), k=MAX_K)]:
            ids = [r.publication_id for r in delta_loaded.recommend(query)]
            assert gone not in ids, f"the deleted publication {gone!r} is recommended for {query.to_dict()}"
        with pytest.raises(UnknownPublication):
            delta_loaded.recommend(Query(publication_id=gone, k=5))

    def test_delta_finds_new_and_replaced_publications_by_their_text(
        self, delta_case: DeltaCase, delta_loaded: Engine
    ) -> None:
        for pub in (*delta_case.added, delta_case.replaced):
            ids = [r.publication_id for r in delta_loaded.recommend(Query(text=_text(pub), k=FOUND_WITHIN))]
            assert pub.id in ids, f"the text of the new or replaced publication {pub.id!r} finds {ids}"

    def test_delta_writes_less_than_half_the_engine(self, delta_build: DeltaBuild) -> None:
        after = checks.file_hashes(delta_build.folder)
        new = checks.changed_files(delta_build.before, after)
        new_bytes = sum(after[name][1] for name in new)
        total = sum(size for _, size in after.values())
        assert new_bytes < MAX_NEW_SHARE * total, (
            f"{new_bytes} of the incremental engine's {total} bytes are new or changed "
            f"({100 * new_bytes / max(total, 1):.0f}%, at most {100 * MAX_NEW_SHARE:.0f}% allowed): {sorted(new)}; "
            "keep the files of unchanged publications byte-identical"
        )

    def test_delta_leaves_previous_unchanged(self, delta_build: DeltaBuild) -> None:
        changed = sorted(
            set(checks.changed_files(delta_build.before, delta_build.after))
            | (set(delta_build.before) - set(delta_build.after))
        )
        assert not changed, f"the incremental build changed, added or removed files under previous: {changed}"

    def test_delta_rebuild_of_an_unchanged_corpus_keeps_every_segment_file(
        self,
        delta_case: DeltaCase,
        delta_build: DeltaBuild,
        delta_loaded: Engine,
        engine_settings: Settings,
        tmp_path_factory: pytest.TempPathFactory,
    ) -> None:
        before = checks.file_hashes(delta_build.folder)
        folder = tmp_path_factory.mktemp("delta-unchanged")
        with self.engine_class(engine_settings) as again:
            again.fit(delta_case.corpus, previous=delta_build.folder)
            again.save(folder)
        after = checks.file_hashes(folder)
        lost = [name for name in before if "/" in name and after.get(name) != before[name]]
        added = [name for name in checks.changed_files(before, after) if "/" in name]
        assert not lost and not added, (
            f"a rebuild of the unchanged corpus rewrote or dropped {lost} and added {added}: "
            "keep every segment file (only top-level state files may change)"
        )
        assert checks.file_hashes(delta_build.folder) == before, "the rebuild changed files under previous"
        queries = delta_queries(delta_case)
        with self.engine_class.load(folder, engine_settings) as reloaded:
            problems = checks.diff_rankings(
                [checks.answer(delta_loaded, q) for q in queries], [checks.answer(reloaded, q) for q in queries]
            )
        assert not problems, "the rebuilt engine ranks differently:\n" + "\n".join(problems)
