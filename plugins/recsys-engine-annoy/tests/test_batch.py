"""recommend_many: one encoder call for every sentence of a batch, the same answers as one by one."""

from __future__ import annotations

from recsys.domain import Example, Query
from recsys.errors import UnknownPublication
from recsys_engine_annoy import AnnoyEngine

TEXTS = ["Graph neural networks predict molecular properties.", "Dark matter halos around dwarf galaxies.",
         "Gene expression in cancer cells. CRISPR screens find suppressors."]


def test_a_batch_is_encoded_in_one_call_and_answers_as_single_queries(engine: AnnoyEngine, monkeypatch):
    queries = [Query(text=TEXTS[0], k=3), Query(publication_id="no-such-id"),
               Query(like=(Example(text=TEXTS[1]), Example(text=TEXTS[2])), unlike=(Example(text=TEXTS[0]),), k=4),
               Query(text=TEXTS[2], k=2, offset=1, diversity=0.3)]
    singles = [engine.recommend(q) if q.publication_id is None else None for q in queries]
    encoder = engine.encoder()
    calls = []
    original = encoder.encode

    def counting(sentences, **kwargs):
        calls.append(list(sentences))
        return original(sentences, **kwargs)

    monkeypatch.setattr(encoder, "encode", counting)
    answers = engine.recommend_many(queries)

    assert len(calls) == 1, calls
    assert sorted(calls[0]) == sorted({"Graph neural networks predict molecular properties.",
                                       "Dark matter halos around dwarf galaxies.", "Gene expression in cancer cells.",
                                       "CRISPR screens find suppressors."})
    assert isinstance(answers[1], UnknownPublication)
    for single, answer in zip(singles, answers, strict=True):
        if single is not None:
            assert [r.publication_id for r in answer] == [r.publication_id for r in single]
