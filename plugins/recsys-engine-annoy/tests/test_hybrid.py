"""The hybrid score: the dense cosine fused with the lexical engine's TF-IDF cosine
(docs/engine-annoy.md, *Hybrid retrieval*)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from recsys.config import Settings
from recsys.domain import Query
from recsys.errors import ConfigError
from recsys.text import split_sentences
from recsys_engine_annoy import AnnoyEngine
from recsys_engine_annoy.lexical import PREFIX, TOKENIZER
from recsys_engine_annoy.settings import DEFAULT_LEXICAL_WEIGHT, SETTINGS
from recsys_engine_lexical import LexicalEngine


def _scores(engine: AnnoyEngine, query: Query) -> dict[str, float]:
    return {r.publication_id: r.score for r in engine.recommend(query)}


def test_the_score_is_the_documented_blend_on_0_to_1(engine, small_corpus):
    text = split_sentences(small_corpus[3].abstract)[0]
    everything = len(small_corpus)
    dense = _scores(engine, Query(text=text, k=everything, lexical_weight=0.0))
    lexical = _scores(engine, Query(text=text, k=everything, lexical_weight=1.0))
    assert len(dense) == len(lexical) == everything
    for weight in (DEFAULT_LEXICAL_WEIGHT, 0.7):
        fused = _scores(engine, Query(text=text, k=everything, lexical_weight=weight))
        assert all(0.0 <= score <= 1.0 for score in fused.values())
        for pid, score in fused.items():
            assert score == pytest.approx((1 - weight) * max(0.0, dense[pid]) + weight * lexical[pid], abs=1e-5)
    # the request's weight is the setting's when it gives none
    assert _scores(engine, Query(text=text, k=5)) == pytest.approx(
        _scores(engine, Query(text=text, k=5, lexical_weight=DEFAULT_LEXICAL_WEIGHT)))


def test_the_lexical_half_is_the_lexical_engines_score(engine, small_corpus):
    lexical_engine = LexicalEngine()
    lexical_engine.fit(small_corpus)
    for query in (Query(text="quantum error correction on superconducting qubits", k=10),
                  Query(publication_id=small_corpus[5].id, k=10)):
        expected = {r.publication_id: r.score for r in lexical_engine.recommend(query)}
        got = _scores(engine, Query(**{**query.to_dict(), "k": len(small_corpus), "lexical_weight": 1.0}))
        assert expected
        for pid, score in expected.items():
            assert got[pid] == pytest.approx(score, abs=1e-5), pid


def test_evidence_names_the_matched_terms_where_lexical_matching_counted(engine, small_corpus):
    target = small_corpus[11]
    sentence = split_sentences(target.abstract)[0]
    found = engine.recommend(Query(text=sentence, k=3))
    best = next(r for r in found if r.publication_id == target.id)
    first = best.evidence[0]
    assert first.terms and set(first.terms) <= set(TOKENIZER(sentence)) & set(TOKENIZER(first.sentence))
    assert first.to_dict()["terms"] == list(first.terms)
    dense_only = engine.recommend(Query(text=sentence, k=3, lexical_weight=0.0))
    assert all(not e.terms and "terms" not in e.to_dict() for r in dense_only for e in r.evidence)


def test_saved_lexical_files_are_mapped_and_an_engine_without_them_answers_alike(
        engine, saved, settings, small_corpus, tmp_path, caplog):
    queries = [Query(text="gene expression in tumour cells", k=8), Query(publication_id=small_corpus[2].id, k=8)]
    expected = [_scores(engine, q) for q in queries]
    loaded = AnnoyEngine.load(saved, settings)
    try:
        assert [_scores(loaded, q) for q in queries] == [pytest.approx(e) for e in expected]
    finally:
        loaded.close()
    older = tmp_path / "older"
    shutil.copytree(saved, older)
    for path in (older / "segments").glob(f"*/{PREFIX}*"):
        path.unlink()
    with caplog.at_level(logging.INFO, logger="recsys_engine_annoy.lexical"):
        rebuilt = AnnoyEngine.load(older, settings)
    try:
        assert "has no lexical files" in caplog.text
        assert [_scores(rebuilt, q) for q in queries] == [pytest.approx(e) for e in expected]
        again = tmp_path / "again"
        rebuilt.save(again)  # the next save writes them
        assert sorted(p.name for p in (again / "segments").glob(f"*/{PREFIX}*")) == sorted(
            p.name for p in (Path(saved) / "segments").glob(f"*/{PREFIX}*"))
    finally:
        rebuilt.close()


def test_the_weight_is_a_checked_setting():
    with pytest.raises(ConfigError, match="RECSYS_ANNOY_LEXICAL_WEIGHT='1.5' is not valid"):
        Settings.from_env({"RECSYS_ANNOY_LEXICAL_WEIGHT": "1.5"}, env_file=None, plugins=[SETTINGS])
    read = Settings.from_env({"RECSYS_ANNOY_LEXICAL_WEIGHT": "0"}, env_file=None, plugins=[SETTINGS])
    assert AnnoyEngine(read).options.lexical_weight == 0.0
