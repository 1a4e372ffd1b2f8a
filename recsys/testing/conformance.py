"""The engine conformance suite: contract tests every engine plugin runs against itself.

Subclass :class:`EngineConformance` in a test module of the plugin::

    from recsys.testing.conformance import EngineConformance
    from recsys_engine_lexical import LexicalEngine

    class TestLexicalConformance(EngineConformance):
        engine_class = LexicalEngine

Class attributes:

* ``engine_class`` (required): the Engine subclass; it must be importable as
  ``module:QualName`` (the fresh-process test imports it by that name);
* ``slow_tests``: names of tests to mark ``@pytest.mark.slow`` in this subclass
  only, e.g. ``{"test_fresh_process_gives_same_answers"}``.

Fixtures a subclass may override (all class-scoped):

* ``corpus``: the publications to build from (default: the bundled demo corpus).
  The filter tests need at least two labels with five or more publications each,
  and years on most publications;
* ``engine_settings``: the Settings given to the engine (default: ``Settings()``
  with ``data_dir`` in a temporary folder);
* ``engine_registry``: a Registry holding the engine under its name (default: one
  built from ``engine_class``, so no entry point needs to be installed).

Fixtures a subclass's own tests may use: ``built_engine`` (fitted on the corpus),
``saved_engine`` (its folder and EngineMetadata), ``loaded_engine`` (loaded back
from that folder), ``probe_queries`` (a mix of text, by-id and filtered queries).

Every engine also runs the request-field tests of
:class:`recsys.testing.requests.RequestConformance` (``like``/``unlike``, ``min_score``,
``diversity``, ``offset``, ``recommend_many``).

Engines with ``supports_delta = True`` (incremental builds from ``previous``) also run
the ``test_delta_*`` tests of :class:`recsys.testing.delta.DeltaConformance`, with the
fixtures ``delta_case``, ``delta_build`` (the incremental build and the hashes of
``previous``), ``delta_loaded`` and ``delta_expected``; for other engines they skip.
"""

from __future__ import annotations

import json
import threading
import types
from collections import Counter
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any, ClassVar

import pytest

from recsys import archive, build, load
from recsys.config import Settings
from recsys.domain import MAX_K, Publication, Query
from recsys.engine import Engine, EngineMetadata
from recsys.errors import EngineLoadError, RecsysError, UnknownPublication
from recsys.registry import GROUP, Registry
from recsys.testing import checks
from recsys.testing.delta import DeltaConformance
from recsys.testing.probes import (
    UNKNOWN_WORDS,
    filter_cases,
    label_precision_at,
    probe_queries,
    spread,
)
from recsys.testing.requests import RequestConformance

__all__ = ["EngineConformance", "default_corpus"]

#: Threads of the concurrency test.
THREADS = 8


def default_corpus() -> list[Publication]:
    """The bundled demo corpus (``recsys.sources.DemoSource``)."""
    from recsys.sources import DemoSource, load_publications

    return load_publications(DemoSource())


def _copy_function(function: Callable[..., Any]) -> types.FunctionType:
    assert isinstance(function, types.FunctionType)
    copy = types.FunctionType(
        function.__code__, function.__globals__, function.__name__, function.__defaults__, function.__closure__
    )
    copy.__dict__.update(function.__dict__)
    copy.__kwdefaults__ = function.__kwdefaults__
    copy.__qualname__ = function.__qualname__
    copy.__doc__ = function.__doc__
    return copy


class EngineConformance(DeltaConformance, RequestConformance):
    """The engine contract as pytest tests; see the module docstring for how to use it.
    The ``test_delta_*`` tests (:mod:`recsys.testing.delta`) run only for an engine class
    with ``supports_delta = True``."""

    engine_class: ClassVar[type[Engine]]
    slow_tests: ClassVar[Collection[str]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in cls.slow_tests:
            test = getattr(cls, name, None)
            if not name.startswith("test_") or not isinstance(test, types.FunctionType):
                raise TypeError(f"{cls.__name__}.slow_tests names {name!r}, which is not a test of this class")
            # A copy, so that the mark stays on this subclass's test only.
            setattr(cls, name, pytest.mark.slow(_copy_function(test)))

    # -- fixtures a plugin may override -------------------------------------------

    @pytest.fixture(scope="class")
    @classmethod
    def corpus(cls) -> list[Publication]:
        return default_corpus()

    @pytest.fixture(scope="class")
    @classmethod
    def engine_settings(cls, tmp_path_factory: pytest.TempPathFactory) -> Settings:
        return Settings(data_dir=tmp_path_factory.mktemp("engine-data"))

    @pytest.fixture(scope="class")
    @classmethod
    def engine_registry(cls) -> Registry:
        engine = cls.engine_class
        return Registry([EntryPoint(engine.name, checks.engine_reference(engine), GROUP)])

    # -- fixtures built from them ----------------------------------------------------

    @pytest.fixture(scope="class")
    @classmethod
    def progress_calls(cls) -> list[tuple[str, int, int | None]]:
        return []

    @pytest.fixture(scope="class")
    @classmethod
    def built_engine(
        cls,
        corpus: list[Publication],
        engine_settings: Settings,
        progress_calls: list[tuple[str, int, int | None]],
    ) -> Engine:
        def progress(stage: str, done: int, total: int | None = None) -> None:
            progress_calls.append((stage, done, total))

        engine = cls.engine_class(engine_settings)
        engine.fit(corpus, progress=progress)
        return engine

    @pytest.fixture(scope="class")
    @classmethod
    def saved_engine(
        cls, built_engine: Engine, tmp_path_factory: pytest.TempPathFactory
    ) -> tuple[Path, EngineMetadata]:
        folder = tmp_path_factory.mktemp("saved-engine")
        return folder, built_engine.save(folder)

    @pytest.fixture(scope="class")
    @classmethod
    def loaded_engine(cls, saved_engine: tuple[Path, EngineMetadata], engine_settings: Settings) -> Iterator[Engine]:
        engine = cls.engine_class.load(saved_engine[0], engine_settings)
        yield engine
        engine.close()

    @pytest.fixture(scope="class")
    @classmethod
    def probe_queries(cls, corpus: list[Publication]) -> list[Query]:
        return probe_queries(corpus)

    @pytest.fixture(scope="class")
    @classmethod
    def corpus_by_id(cls, corpus: list[Publication]) -> dict[str, Publication]:
        return {p.id: p for p in corpus}

    # -- building and saving ------------------------------------------------------

    def test_name_is_a_valid_entry_point_name(self) -> None:
        name = self.engine_class.name
        assert name and name.islower() and name.replace("-", "").replace("_", "").isalnum(), (
            f"{self.engine_class.__name__}.name is {name!r}: set it to the entry-point name"
        )

    def test_fit_holds_every_publication(self, built_engine: Engine, corpus: list[Publication]) -> None:
        assert built_engine.publication_count == len(corpus), (
            f"fit on {len(corpus)} publications, publication_count is {built_engine.publication_count}"
        )

    def test_fit_reports_progress(
        self, built_engine: Engine, progress_calls: list[tuple[str, int, int | None]]
    ) -> None:
        assert progress_calls, "fit() never called its progress hook"
        for stage, done, total in progress_calls:
            assert isinstance(stage, str) and stage, f"progress stage {stage!r} is not a name"
            assert isinstance(done, int) and done >= 0, f"progress({stage!r}) done={done!r}"
            assert total is None or (isinstance(total, int) and total >= 0), f"progress({stage!r}) total={total!r}"

    def test_fit_refuses_no_publications(self, engine_settings: Settings) -> None:
        with pytest.raises(RecsysError):
            self.engine_class(engine_settings).fit([])

    def test_save_writes_only_plain_files(self, saved_engine: tuple[Path, EngineMetadata]) -> None:
        problems = checks.plain_file_problems(saved_engine[0])
        assert not problems, "\n".join(problems)

    def test_metadata_counts_match(
        self, saved_engine: tuple[Path, EngineMetadata], loaded_engine: Engine, corpus: list[Publication]
    ) -> None:
        metadata = saved_engine[1]
        assert isinstance(metadata, EngineMetadata), f"save() returned {metadata!r}, not EngineMetadata"
        assert metadata.publications == len(corpus), f"metadata says {metadata.publications} of {len(corpus)}"
        assert metadata.sentences >= len(corpus), f"metadata says {metadata.sentences} sentences"
        assert metadata.model is None or isinstance(metadata.model, str), f"model {metadata.model!r}"
        assert metadata.dimension is None or isinstance(metadata.dimension, int), f"dimension {metadata.dimension!r}"
        json.dumps(metadata.extra)  # plain JSON values only
        assert loaded_engine.publication_count == len(corpus), (
            f"the loaded engine holds {loaded_engine.publication_count} of {len(corpus)} publications"
        )

    def test_load_refuses_a_folder_without_its_files(self, tmp_path: Path, engine_settings: Settings) -> None:
        with pytest.raises(EngineLoadError):
            self.engine_class.load(tmp_path, engine_settings)

    def test_loaded_answers_like_built(
        self, built_engine: Engine, loaded_engine: Engine, probe_queries: list[Query]
    ) -> None:
        expected = [checks.answer(built_engine, q) for q in probe_queries]
        actual = [checks.answer(loaded_engine, q) for q in probe_queries]
        problems = checks.diff_answers(expected, actual)
        assert not problems, "\n".join(problems)

    def test_fresh_process_gives_same_answers(
        self,
        saved_engine: tuple[Path, EngineMetadata],
        loaded_engine: Engine,
        engine_settings: Settings,
        probe_queries: list[Query],
    ) -> None:
        expected = [checks.answer(loaded_engine, q) for q in probe_queries]
        actual = checks.run_in_fresh_process(self.engine_class, saved_engine[0], engine_settings, probe_queries)
        problems = checks.diff_answers(expected, actual)
        assert not problems, "\n".join(problems)

    def test_independent_builds_answer_the_same(
        self, corpus: list[Publication], engine_settings: Settings, loaded_engine: Engine, probe_queries: list[Query]
    ) -> None:
        again = self.engine_class(engine_settings)
        again.fit(corpus)
        problems = checks.diff_answers(
            [checks.answer(loaded_engine, q) for q in probe_queries], [checks.answer(again, q) for q in probe_queries]
        )
        assert not problems, "two builds on the same corpus differ:\n" + "\n".join(problems)

    def test_archive_round_trip(
        self,
        corpus: list[Publication],
        engine_settings: Settings,
        engine_registry: Registry,
        loaded_engine: Engine,
        probe_queries: list[Query],
        tmp_path: Path,
    ) -> None:
        name = self.engine_class.name
        verified = build.build_archive(
            corpus, tmp_path / "engine.zip", engine=name, registry=engine_registry, settings=engine_settings
        )
        assert verified.manifest.engine == name, f"the manifest names engine {verified.manifest.engine!r}"
        assert verified.manifest.publications == len(corpus), (
            f"the manifest counts {verified.manifest.publications} of {len(corpus)} publications"
        )
        folder = tmp_path / "unpacked"
        archive.unpack(verified.path, folder, engines=engine_registry.names())
        with load.load_engine(folder, registry=engine_registry, settings=engine_settings) as engine:
            assert isinstance(engine, self.engine_class), f"load_engine gave a {type(engine).__name__}"
            problems = checks.diff_answers(
                [checks.answer(loaded_engine, q) for q in probe_queries],
                [checks.answer(engine, q) for q in probe_queries],
            )
        assert not problems, "the engine from the archive answers differently:\n" + "\n".join(problems)

    # -- recommending ----------------------------------------------------------------

    def test_text_queries_are_well_formed(
        self, loaded_engine: Engine, corpus: list[Publication], corpus_by_id: dict[str, Publication]
    ) -> None:
        for pub in spread(corpus, 6):
            for k in (1, 5):
                query = Query(text=checks.sentence_text([pub.title, pub.abstract]), k=k)
                recs = loaded_engine.recommend(query)
                assert recs, f"no recommendation for the text of {pub.id!r}"
                problems = checks.ranking_problems(recs, query, corpus_by_id)
                assert not problems, f"text of {pub.id!r}, k={k}:\n" + "\n".join(problems)

    def test_own_text_ranks_its_publication_first(self, loaded_engine: Engine, corpus: list[Publication]) -> None:
        for pub in spread(corpus, 6):
            recs = loaded_engine.recommend(Query(text=checks.sentence_text([pub.title, pub.abstract]), k=3))
            top = recs[0].publication_id if recs else None
            assert top == pub.id, f"the text of {pub.id!r} ranks {top!r} first"

    def test_by_id_never_returns_itself(
        self, loaded_engine: Engine, corpus: list[Publication], corpus_by_id: dict[str, Publication]
    ) -> None:
        for pub in spread(corpus, 30):
            query = Query(publication_id=pub.id, k=10)
            recs = loaded_engine.recommend(query)
            assert recs, f"no recommendation for publication {pub.id!r}"
            problems = checks.ranking_problems(recs, query, corpus_by_id)
            assert not problems, f"publication {pub.id!r}:\n" + "\n".join(problems)

    def test_by_id_prefers_the_same_label(self, loaded_engine: Engine, corpus: list[Publication]) -> None:
        precision = label_precision_at(loaded_engine, corpus, k=5, limit=60)
        assert precision > 0.5, f"on average only {precision:.2f} of the top 5 by id share the query's label"

    def test_unknown_publication_is_an_error(self, loaded_engine: Engine) -> None:
        with pytest.raises(UnknownPublication):
            loaded_engine.recommend(Query(publication_id="no-such-publication-id-0000"))

    def test_unknown_words_give_a_list(self, loaded_engine: Engine, corpus_by_id: dict[str, Publication]) -> None:
        query = Query(text=UNKNOWN_WORDS, k=5)
        recs = loaded_engine.recommend(query)
        assert isinstance(recs, list), f"recommend() returned a {type(recs).__name__}, not a list"
        problems = checks.ranking_problems(recs, query, corpus_by_id, require_evidence=False)
        assert not problems, "\n".join(problems)

    def test_k_bounds(self, loaded_engine: Engine, corpus: list[Publication]) -> None:
        text = checks.sentence_text(p.title for p in spread(corpus, 40))
        for query, most in (
            (Query(text=text, k=1), 1),
            (Query(text=text, k=MAX_K), min(MAX_K, len(corpus))),
            (Query(publication_id=corpus[0].id, k=1), 1),
            (Query(publication_id=corpus[0].id, k=MAX_K), min(MAX_K, len(corpus) - 1)),
        ):
            recs = loaded_engine.recommend(query)
            ids = [r.publication_id for r in recs]
            assert 1 <= len(recs) <= most, f"{len(recs)} recommendations for {query.to_dict()}, expected 1..{most}"
            assert len(set(ids)) == len(ids), f"duplicates in {ids}"

    # -- filters ---------------------------------------------------------------------

    def test_exclude_ids_are_never_returned(
        self, loaded_engine: Engine, corpus: list[Publication], corpus_by_id: dict[str, Publication]
    ) -> None:
        text = checks.sentence_text(p.title for p in spread(corpus, 20))
        first = loaded_engine.recommend(Query(text=text, k=5))
        excluded = frozenset(r.publication_id for r in first[:3])
        query = Query(text=text, k=5, exclude_ids=excluded)
        recs = loaded_engine.recommend(query)
        assert len(recs) == 5, f"{len(recs)} recommendations after excluding {sorted(excluded)}, expected 5"
        problems = checks.ranking_problems(recs, query, corpus_by_id)
        assert not problems, "\n".join(problems)

    def test_label_filter_fills_k_beyond_the_unfiltered_top(
        self, loaded_engine: Engine, corpus: list[Publication], corpus_by_id: dict[str, Publication]
    ) -> None:
        case = filter_cases(corpus).label
        unfiltered = loaded_engine.recommend(Query(text=case.text, k=case.k))
        inside = sum(corpus_by_id[r.publication_id].label == case.query.label for r in unfiltered)
        assert inside < case.k, (
            f"the test's premise failed: the unfiltered top {case.k} already has {inside} of label "
            f"{case.query.label!r}; the corpus does not suit this test"
        )
        recs = loaded_engine.recommend(case.query)
        assert len(recs) == case.k, (
            f"{len(recs)} recommendations with label {case.query.label!r}, expected {case.k}: "
            "over-fetch (or score every publication) when filters are given"
        )
        problems = checks.ranking_problems(recs, case.query, corpus_by_id)
        assert not problems, "\n".join(problems)

    def test_year_filter_fills_k(
        self, loaded_engine: Engine, corpus: list[Publication], corpus_by_id: dict[str, Publication]
    ) -> None:
        case = filter_cases(corpus).years
        recs = loaded_engine.recommend(case.query)
        assert len(recs) == case.k, (
            f"{len(recs)} recommendations for years {case.query.year_min}..{case.query.year_max}, expected {case.k}"
        )
        problems = checks.ranking_problems(recs, case.query, corpus_by_id)
        assert not problems, "\n".join(problems)

    def test_filters_combine(
        self, loaded_engine: Engine, corpus: list[Publication], corpus_by_id: dict[str, Publication]
    ) -> None:
        labels = Counter(p.label for p in corpus if p.label is not None)
        label = labels.most_common(1)[0][0]
        members = [p for p in corpus if p.label == label]
        years = sorted(p.year for p in members if p.year is not None)
        query = Query(
            publication_id=members[0].id, k=10, label=label, exclude_ids=frozenset({members[1].id}),
            year_min=years[0], year_max=years[len(years) // 2],
        )
        problems = checks.ranking_problems(loaded_engine.recommend(query), query, corpus_by_id)
        assert not problems, "\n".join(problems)

    # -- concurrency -------------------------------------------------------------------

    def test_threads_get_the_same_answers(self, loaded_engine: Engine, probe_queries: list[Query]) -> None:
        expected = [checks.answer(loaded_engine, q) for q in probe_queries]
        barrier = threading.Barrier(THREADS, timeout=120)

        def run(offset: int) -> list[checks.Answer]:
            order = [(offset + i) % len(probe_queries) for i in range(len(probe_queries))]
            barrier.wait()
            got: dict[int, checks.Answer] = {}
            for _ in range(2):
                for i in order:
                    got[i] = checks.answer(loaded_engine, probe_queries[i])
            return [got[i] for i in range(len(probe_queries))]

        with ThreadPoolExecutor(THREADS) as pool:
            results = list(pool.map(run, range(THREADS)))
        for thread, actual in enumerate(results):
            problems = checks.diff_answers(expected, actual)
            assert not problems, f"thread {thread} got other answers:\n" + "\n".join(problems)
