"""A first-wave engine folder (format 1, saved by the first-wave code: tests/data/README.md)
still loads, answers as it did, and an incremental build from it is a full build that
reuses its vectors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from recsys.domain import Publication, Query
from recsys_engine_annoy import AnnoyEngine
from recsys_engine_annoy.model import resolve_model
from recsys_engine_annoy.settings import SETTINGS

FIRST_WAVE = Path(__file__).parent / "data" / "first-wave"

#: The corpus it was built from.
PUBLICATIONS = [
    Publication(id="fw-1", title="Robots that walk on sand", abstract="Legged robots slip on granular media. We "
                "learn a gait that adapts to loose sand.", label="cs.RO", year=2021),
    Publication(id="fw-2", title="Quantum error correction with surface codes", abstract="Surface codes protect "
                "logical qubits. We lower the threshold with a new decoder.", label="quant-ph", year=2019),
    Publication(id="fw-3", title="Wheeled robots on soft soil", abstract="Rovers sink into soft terrain. A "
                "controller reduces wheel slip on sand.", label="cs.RO", year=2022),
    Publication(id="fw-4", title="Decoding quantum codes with neural networks", abstract="A neural decoder corrects "
                "errors on surface codes.", label="quant-ph", year=None),
]

#: Its answers when it was saved.
SAVED_ANSWERS = {
    "fw-1": [("fw-3", 0.679349), ("fw-4", 0.070194), ("fw-2", 0.008968)],
    "fw-2": [("fw-4", 0.756542), ("fw-3", 0.084204), ("fw-1", 0.008968)],
    "A legged robot on loose sand.": [("fw-1", 0.786594), ("fw-3", 0.601863), ("fw-4", 0.001634)],
}


@pytest.fixture
def first_wave(settings, tmp_path) -> Path:
    import json

    info = json.loads((FIRST_WAVE / "engine.json").read_text())
    if info["model_sha256"] != resolve_model(settings).sha256:
        pytest.skip("the installed default model is not the one the first-wave fixture was built with")
    folder = tmp_path / "first-wave"
    shutil.copytree(FIRST_WAVE, folder)
    return folder


def _answers(engine: AnnoyEngine) -> dict[str, list[tuple[str, float]]]:
    got = {}
    for key in SAVED_ANSWERS:
        # the saved answers are the first wave's cosines: the dense half alone
        query = (Query(publication_id=key, k=3, lexical_weight=0.0) if key.startswith("fw-")
                 else Query(text=key, k=3, lexical_weight=0.0))
        got[key] = [(r.publication_id, r.score) for r in engine.recommend(query)]
    return got


def test_a_first_wave_engine_loads_and_answers_as_it_did(first_wave, settings):
    engine = AnnoyEngine.load(first_wave, settings.with_plugin(SETTINGS, embedding_backend="auto"))
    try:
        assert engine.publication_count == 4 and engine.info.format == 1
        for key, answer in _answers(engine).items():
            assert [pid for pid, _ in answer] == [pid for pid, _ in SAVED_ANSWERS[key]], key
            assert [score for _, score in answer] == pytest.approx([s for _, s in SAVED_ANSWERS[key]], abs=2e-6)
        evidence = engine.recommend(Query(publication_id="fw-1", k=1))[0].evidence
        assert evidence and all(e.sentence for e in evidence)
    finally:
        engine.close()


def test_a_build_from_a_first_wave_engine_is_a_full_build_reusing_its_vectors(first_wave, settings, tmp_path):
    # auto builds with the backend of the engine it extends
    engine = AnnoyEngine(settings.with_plugin(SETTINGS, embedding_backend="auto"))
    engine.fit([*PUBLICATIONS[:3], Publication(id="fw-5", title="Sand", abstract="Robots on sand dunes.")],
               previous=first_wave)
    assert engine.build_stats["encoded"] == 2  # fw-5's two sentences: all others come from the first-wave engine
    assert engine.segment_report()["ids"] == ["s000001"] and engine.info.format == 2
    assert engine.info.backend == "onnx"
    (tmp_path / "out").mkdir()
    engine.save(tmp_path / "out")
    assert {r.publication_id for r in engine.recommend(Query(publication_id="fw-1", k=2))} == {"fw-3", "fw-5"}
    engine.close()
