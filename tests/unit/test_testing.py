"""recsys.testing: the stub engine, its registry and corpus, the conformance suite's
helpers, and the suite itself run against the stub."""

from __future__ import annotations

import pickle
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest

from recsys.domain import Query
from recsys.errors import EngineLoadError, IncompatibleEngine, SourceError, UnknownPublication
from recsys.testing import SAMPLE_LABELS, StubEngine, checks, sample_publications, stub_registry
from recsys.testing.conformance import EngineConformance
from recsys.testing.probes import filter_cases


class TestStubConformance(EngineConformance):
    engine_class = StubEngine

    @pytest.fixture(scope="class")
    @classmethod
    def corpus(cls):
        return sample_publications()


class TestStubConformanceOnTheDemoCorpus(EngineConformance):
    engine_class = StubEngine
    slow_tests = {"test_fresh_process_gives_same_answers"}


# -- the stub engine ---------------------------------------------------------------


@pytest.fixture(scope="module")
def stub():
    engine = StubEngine()
    engine.fit(sample_publications())
    return engine


def test_sample_corpus_has_four_labels_of_five_with_years():
    pubs = sample_publications()
    assert len({p.id for p in pubs}) == len(pubs) == 20
    assert Counter(p.label for p in pubs) == {label: 5 for label in SAMPLE_LABELS}
    assert all(p.year is not None and 2015 <= p.year <= 2024 for p in pubs)


def test_stub_registry_holds_the_stub_engine():
    registry = stub_registry()
    assert registry.names() == ["stub"]
    assert registry.get("stub") is StubEngine


def test_stub_ranks_by_word_overlap_with_evidence(stub):
    recs = stub.recommend(Query(text="A robot hand grasps objects with tactile sensors.", k=3))
    assert recs[0].publication_id == "rob-01"
    assert recs[0].evidence[0].sentence == "A robot hand with tactile sensors learns to grasp unfamiliar objects."
    assert [r.score for r in recs] == sorted((r.score for r in recs), reverse=True)


def test_stub_by_id_finds_the_same_topic(stub):
    recs = stub.recommend(Query(publication_id="gen-02", k=4))
    assert "gen-02" not in {r.publication_id for r in recs}
    assert Counter(r.label for r in recs)["genomics"] >= 3


def test_stub_returns_nothing_for_unknown_words(stub):
    assert stub.recommend(Query(text="Zqxv blorft quuxian.")) == []


def test_stub_unknown_id_names_it(stub):
    with pytest.raises(UnknownPublication, match="'nope'"):
        stub.recommend(Query(publication_id="nope"))


def test_stub_refuses_duplicate_ids():
    pubs = sample_publications()
    with pytest.raises(SourceError, match="'astro-01' appears twice"):
        StubEngine().fit([*pubs, pubs[0]])


def test_stub_saves_one_json_file_and_loads_it(stub, tmp_path):
    metadata = stub.save(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["stub.json"]
    assert metadata.publications == 20 and metadata.sentences == 20 * 4
    loaded = StubEngine.load(tmp_path)
    query = Query(publication_id="ling-03", k=5)
    assert loaded.recommend(query) == stub.recommend(query)


def test_stub_load_names_the_problem(tmp_path):
    (tmp_path / "stub.json").write_text('{"format": 99, "publications": []}')
    with pytest.raises(IncompatibleEngine, match="format 99"):
        StubEngine.load(tmp_path)
    (tmp_path / "stub.json").write_text('{"format": 1, "publications": [{"title": "x"}]}')
    with pytest.raises(EngineLoadError, match="malformed"):
        StubEngine.load(tmp_path)


def test_importing_recsys_testing_does_not_import_pytest():
    code = "import sys, recsys.testing; print('pytest' in sys.modules, 'numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split()[0] == "False"


# -- the suite's helpers --------------------------------------------------------------


def test_plain_file_check_finds_pickles_and_object_arrays(tmp_path):
    (tmp_path / "ok.npy").write_bytes(b"")
    np.save(tmp_path / "ok.npy", np.arange(3))
    (tmp_path / "vocab.json").write_text('{"a": 1}')
    assert checks.plain_file_problems(tmp_path) == []

    (tmp_path / "model.bin").write_bytes(pickle.dumps({"a": 1}, protocol=4))
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    (tmp_path / "broken.json").write_text("{")
    (tmp_path / "manifest.json").write_text("{}")
    problems = "\n".join(checks.plain_file_problems(tmp_path))
    assert "model.bin starts like a pickle" in problems
    assert "objects.npy does not load as plain npy" in problems
    assert "broken.json does not load as plain json" in problems
    assert "manifest.json is reserved" in problems


def test_plain_file_check_refuses_links_and_empty_folders(tmp_path):
    assert checks.plain_file_problems(tmp_path) == [f"save() wrote no file into {tmp_path}"]
    (tmp_path / "target.json").write_text("[]")
    (tmp_path / "link.json").symlink_to(tmp_path / "target.json")
    assert checks.plain_file_problems(tmp_path) == ["link.json is a symbolic link; save plain files only"]


def test_ranking_check_reports_every_broken_rule(stub):
    corpus = {p.id: p for p in sample_publications()}
    query = Query(publication_id="astro-01", k=2, label="astronomy")
    recs = stub.recommend(Query(publication_id="astro-01", k=3))
    broken = [recs[1], recs[0], recs[0]]
    broken[2] = type(recs[0])("astro-01", "wrong title", 0.0, recs[0].evidence)
    problems = "\n".join(checks.ranking_problems(broken, query, corpus))
    assert "3 recommendations for k=2" in problems
    assert "not sorted" in problems
    assert "has title 'wrong title'" in problems
    assert "breaks the query's filters" in problems


def test_diff_answers_tolerates_tiny_score_noise_only():
    rec = {"publication_id": "a", "title": "A", "score": 0.5, "evidence": []}
    same = [{"recommendations": [rec]}]
    assert checks.diff_answers(same, [{"recommendations": [dict(rec, score=0.500001)]}]) == []
    assert checks.diff_answers(same, [{"recommendations": [dict(rec, score=0.6)]}])
    assert checks.diff_answers(same, [{"recommendations": [dict(rec, publication_id="b")]}])
    assert checks.diff_answers(same, [{"error": "unknown_publication"}])


def test_filter_cases_need_two_big_labels():
    with pytest.raises(ValueError, match="two labels"):
        filter_cases([p for p in sample_publications() if p.label == "genomics"])


def test_slow_tests_are_marked_on_the_subclass_only():
    marked = TestStubConformanceOnTheDemoCorpus.test_fresh_process_gives_same_answers
    assert [m.name for m in getattr(marked, "pytestmark", [])] == ["slow"]
    assert not hasattr(EngineConformance.test_fresh_process_gives_same_answers, "pytestmark")
    with pytest.raises(TypeError, match="test_nothing"):
        type("TestBad", (EngineConformance,), {"engine_class": StubEngine, "slow_tests": {"test_nothing"}})


def test_settings_round_trip_through_the_environment(tmp_path):
    from recsys.config import Settings

    settings = Settings(data_dir=tmp_path, api_token="secret", cache_dir=None, keep_engines=7)
    rebuilt = Settings.from_env(checks.settings_environ(settings), env_file=None)
    assert rebuilt == settings


def test_fresh_process_reports_the_childs_error(tmp_path):
    from recsys.config import Settings

    with pytest.raises(AssertionError, match="EngineLoadError"):
        checks.run_in_fresh_process(StubEngine, tmp_path / "missing", Settings(), [Query(text="x")])




# -- the delta checks ------------------------------------------------------------------


def _ranked(*pairs):
    return {"recommendations": [{"publication_id": i, "score": s} for i, s in pairs]}


def test_diff_rankings_wants_the_same_ids_in_order_and_close_scores():
    want = [_ranked(("a", 0.9), ("b", 0.5)), {"error": "unknown_publication"}]
    assert checks.diff_rankings(want, [_ranked(("a", 0.900001), ("b", 0.5)), {"error": "unknown_publication"}]) == []
    assert checks.diff_rankings(want, [_ranked(("b", 0.9), ("a", 0.5)), want[1]])  # order
    assert checks.diff_rankings(want, [_ranked(("a", 0.9), ("b", 0.6)), want[1]])  # a score
    assert checks.diff_rankings(want, [_ranked(("a", 0.9)), want[1]])  # a missing one
    assert checks.diff_rankings(want, [want[0], _ranked()])  # an answer instead of the error
    assert checks.diff_rankings(want, want[:1]) == ["2 answers expected, got 1"]


def test_diff_rankings_lets_exact_ties_swap_but_not_leave():
    want = [_ranked(("a", 0.9), ("b", 0.5), ("c", 0.5))]
    assert checks.diff_rankings(want, [_ranked(("a", 0.9), ("c", 0.5), ("b", 0.5))]) == []
    assert checks.diff_rankings(want, [_ranked(("a", 0.9), ("c", 0.5), ("d", 0.5))])


def test_file_hashes_and_changed_files(tmp_path):
    (tmp_path / "seg").mkdir()
    (tmp_path / "seg" / "a.bin").write_bytes(b"abc")
    (tmp_path / "state.json").write_text("{}")
    before = checks.file_hashes(tmp_path)
    assert set(before) == {"seg/a.bin", "state.json"} and before["seg/a.bin"][1] == 3
    assert before["seg/a.bin"][0] == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    (tmp_path / "state.json").write_text('{"next": 2}')
    (tmp_path / "seg" / "b.bin").write_bytes(b"abc")
    assert sorted(checks.changed_files(before, checks.file_hashes(tmp_path))) == ["seg/b.bin", "state.json"]


def test_delta_case_adds_replaces_and_deletes():
    from recsys.testing.delta import delta_case, delta_queries

    corpus = sample_publications()
    case = delta_case(corpus)
    ids = {p.id for p in case.corpus}
    assert len(case.base) == 18 and len(case.corpus) == 19
    assert all(p.id in ids and p.id not in {b.id for b in case.base} for p in case.added)
    assert case.deleted.id not in ids and case.deleted in case.base
    old = next(p for p in case.base if p.id == case.replaced.id)
    assert old != case.replaced and case.replaced in case.corpus
    queries = delta_queries(case)
    assert any(q.publication_id == case.replaced.id for q in queries) and {q.k for q in queries} >= {1, 5, 10}
    with pytest.raises(ValueError, match="at least 8"):
        delta_case(corpus[:7])


def test_engines_do_not_claim_deltas_by_default():
    from recsys.engine import Engine

    assert Engine.supports_delta is False and StubEngine.supports_delta is False
