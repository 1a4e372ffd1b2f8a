"""A rebuild encodes only the sentences that changed, and never mixes backends (real model)."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from recsys.domain import Publication, Query
from recsys_engine_annoy import AnnoyEngine
from recsys_engine_annoy import engine as engine_module
from recsys_engine_annoy.corpus import publication_sentences
from recsys_engine_annoy.settings import SETTINGS


class CountingEncoder:
    """Wraps an encoder and counts the sentences it is asked to encode."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.backend = inner.backend
        self.dimension = inner.dimension
        self.sentences: list[str] = []

    def encode(self, sentences: Sequence[str], **kwargs) -> np.ndarray:
        self.sentences.extend(sentences)
        return self.inner.encode(sentences, **kwargs)

    def close(self) -> None:
        self.inner.close()


@pytest.fixture
def spy(monkeypatch) -> list[CountingEncoder]:
    made: list[CountingEncoder] = []
    real = engine_module.make_encoder

    def counting(*args, **kwargs):
        made.append(CountingEncoder(real(*args, **kwargs)))
        return made[-1]

    monkeypatch.setattr(engine_module, "make_encoder", counting)
    return made


def _changed(corpus: list[Publication]) -> tuple[list[Publication], Publication]:
    abstract = "A completely new abstract about tidal energy. It has two sentences."
    edited = dataclasses.replace(corpus[5], abstract=abstract)
    return [*corpus[:5], edited, *corpus[6:]], edited


def test_rebuild_encodes_only_changed_sentences(settings, small_corpus, saved, engine, spy):
    corpus, edited = _changed(small_corpus)
    rebuilt = AnnoyEngine(settings)
    rebuilt.fit(corpus, previous=saved)
    new_sentences = set(publication_sentences(edited)) - {
        s for pub in small_corpus for s in publication_sentences(pub)
    }
    assert sorted(spy[0].sentences) == sorted(new_sentences)
    assert rebuilt.build_stats["encoded"] == len(new_sentences)
    # Unchanged publications keep their segment, so their vectors and answers do not move
    old, new = engine.data.segments[0], rebuilt.data.segments[0]
    assert new.id == old.id and new.source == saved / "segments" / old.id
    assert np.array_equal(old.publication_vectors, new.publication_vectors)
    assert np.array_equal(old.sentence_vectors, new.sentence_vectors)
    assert [s.id for s in rebuilt.data.segments] == ["s000001", "s000002"]
    assert rebuilt.data.publications.deleted.tolist() == [5]
    query = Query(publication_id=small_corpus[40].id, k=5)
    before = [r.publication_id for r in engine.recommend(query) if r.publication_id != edited.id]
    after = [r.publication_id for r in rebuilt.recommend(query) if r.publication_id != edited.id]
    assert before[:3] == after[:3]


def test_rebuild_reuses_nothing_from_another_backend(settings, small_corpus, saved, spy, tmp_path: Path):
    # Given a previous engine that says it was made with torch
    previous = tmp_path / "previous"
    shutil.copytree(saved, previous)
    info = json.loads((previous / "engine.json").read_text())
    built_with = info["backend"]
    info["backend"] = "torch" if info["backend"] != "torch" else "onnx"
    (previous / "engine.json").write_text(json.dumps(info))
    # When a rebuild with the backend of the saved engine is given it
    rebuilt = AnnoyEngine(settings.with_plugin(SETTINGS, embedding_backend=built_with))
    rebuilt.fit(small_corpus[:20], previous=previous)
    # Then every distinct sentence is encoded afresh
    distinct = {s for pub in small_corpus[:20] for s in publication_sentences(pub)}
    assert rebuilt.build_stats["reused"] == 0
    assert sorted(spy[0].sentences) == sorted(distinct)


def test_a_damaged_previous_engine_is_ignored(settings, small_corpus, spy, tmp_path: Path):
    (tmp_path / "engine.json").write_text("{not json")
    rebuilt = AnnoyEngine(settings)
    rebuilt.fit(small_corpus[:10], previous=tmp_path)
    assert rebuilt.build_stats["reused"] == 0 and rebuilt.build_stats["encoded"] > 0


def test_identical_sentences_are_encoded_once(settings, small_corpus, spy):
    twin = dataclasses.replace(small_corpus[0], id="twin-of-" + small_corpus[0].id)
    rebuilt = AnnoyEngine(settings)
    rebuilt.fit([small_corpus[0], twin])
    assert len(spy[0].sentences) == len(set(publication_sentences(small_corpus[0])))
    recs = rebuilt.recommend(Query(publication_id=twin.id, k=1))
    assert recs[0].publication_id == small_corpus[0].id and recs[0].score == pytest.approx(1.0, abs=1e-5)


def test_with_the_real_model_an_incremental_build_answers_like_one_from_scratch(settings, small_corpus, saved):
    # Given the saved engine, and the corpus with one publication edited, one removed and one added
    corpus, edited = _changed(small_corpus)
    corpus = [p for p in corpus if p.id != small_corpus[30].id] + [dataclasses.replace(
        small_corpus[0], id="added-1", abstract="Wind turbines on floating platforms. Their wakes interact.")]
    incremental = AnnoyEngine(settings)
    incremental.fit(corpus, previous=saved)
    scratch = AnnoyEngine(settings)
    scratch.fit(corpus)
    # Then every by-id and text query gets the same ids, order, scores and evidence (onnx vectors
    # do not depend on the batch they were encoded in)
    queries = [Query(publication_id=p.id, k=10) for p in corpus[::5]] + [
        Query(text="Robots that walk on sand. Wind turbines.", k=10), Query(text=edited.abstract, k=5)]
    for query in queries:
        mine, theirs = incremental.recommend(query), scratch.recommend(query)
        assert [r.publication_id for r in mine] == [r.publication_id for r in theirs], query
        assert [r.score for r in mine] == pytest.approx([r.score for r in theirs], abs=1e-6)
        assert [[e.sentence for e in r.evidence] for r in mine] == [[e.sentence for e in r.evidence] for r in theirs]
    assert [s.id for s in incremental.data.segments] == ["s000001", "s000002"]
    incremental.close()
    scratch.close()
