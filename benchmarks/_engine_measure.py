"""What ``benchmarks/engine.py`` measures on a built engine: latency, recall, quality, known-item search,
float16 agreement, memory, archive."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import ROOT, percentiles, smaps_summary

from recsys.config import Settings
from recsys.domain import Publication, Query
from recsys_engine_annoy import AnnoyEngine
from recsys_engine_annoy.ann import AnnSettings, VectorIndex, recall_at_k
from recsys_engine_annoy.corpus import publication_sentences
from recsys_engine_annoy.ranking import EngineData, rank

__all__ = [
    "compare_engines",
    "exact_twin",
    "measure_archive",
    "measure_float16",
    "measure_evaluate",
    "measure_known_item",
    "measure_latency",
    "measure_memory",
    "measure_quality",
    "measure_recall",
]

#: By-id queries of the quality measure (sampled with seed 42).
QUALITY_QUERIES = 500
#: Title queries of the known-item measure (sampled with seed 11).
KNOWN_ITEM_QUERIES = 5_000


def measure_latency(engine: AnnoyEngine, corpus: list[Publication]) -> dict[str, Any]:
    """p50/p99 of one-sentence text queries and by-id queries; for the text queries also the
    time of encoding alone, and the share of the exact top 10 they find, with and without
    the sentence index's extra candidates."""
    rng = np.random.default_rng(3)
    texts = [publication_sentences(corpus[i])[-1] for i in rng.choice(len(corpus), 300)]
    ids = [corpus[i].id for i in rng.choice(len(corpus), 500)]
    for text in texts[:20]:
        engine.recommend(Query(text=text, k=10))  # warm-up: model, pages
    exact = exact_twin(engine)
    timings: dict[str, list[float]] = {"text": [], "text_publications_only": [], "id": [], "encode": []}
    found = {"text": 0, "text_publications_only": 0}
    for text in texts:
        query = Query(text=text, k=10)
        started = time.perf_counter()
        recs = engine.recommend(query)
        timings["text"].append(1000 * (time.perf_counter() - started))
        started = time.perf_counter()
        qv = engine.query_vectors(query)
        timings["encode"].append(1000 * (time.perf_counter() - started))
        started = time.perf_counter()
        alone = rank(engine.data, query, dataclasses.replace(qv, sentence_searches=0))
        timings["text_publications_only"].append(1000 * (time.perf_counter() - started) + timings["encode"][-1])
        truth = {r.publication_id for r in rank(exact, query, qv)}
        found["text"] += len(truth & {r.publication_id for r in recs})
        found["text_publications_only"] += len(truth & {r.publication_id for r in alone})
    for pid in ids:
        started = time.perf_counter()
        engine.recommend(Query(publication_id=pid, k=10))
        timings["id"].append(1000 * (time.perf_counter() - started))
    result: dict[str, Any] = {kind: percentiles(values) for kind, values in timings.items()}
    result["recall"] = {kind: count / (10 * len(texts)) for kind, count in found.items()}
    result["load"] = list(os.getloadavg())
    return result


def measure_recall(engine: AnnoyEngine, sweep: bool) -> list[dict[str, Any]]:
    """Recall@10 of the Annoy indexes of segments that have them, against exact search;
    ``sweep`` adds indexes (with the derived settings) over the first 1,000 to 200,000
    sentence vectors and over all publication vectors of the largest segment, as a segment
    of that size would have."""
    rows = []
    rng = np.random.default_rng(5)
    for segment in engine.data.segments:
        for name, index, vectors in (("sentences", segment.sentence_index, segment.sentence_vectors),
                                     ("publications", segment.publication_index, segment.publication_vectors)):
            if index is not None:
                dense = np.asarray(vectors, dtype=np.float32)
                sample = rng.choice(len(dense), min(1000, len(dense)), replace=False)
                rows.append(recall_row(f"{name} ({segment.id})", index, dense, sample))
    if sweep:
        largest = max(engine.data.segments, key=len)
        sentence_vectors = np.asarray(largest.sentence_vectors, dtype=np.float32)
        paper_vectors = np.asarray(largest.publication_vectors, dtype=np.float32)
        for name, vectors, counts in (("sentences (prefix)", sentence_vectors, (1_000, 10_000, 30_000, 100_000,
                                                                                200_000)),
                                      ("publications (all)", paper_vectors, (len(paper_vectors),))):
            for count in counts:
                if count <= len(vectors):
                    subset = vectors[:count]
                    index = VectorIndex.build(subset, AnnSettings.for_items(count, exact_below=0))
                    sample = rng.choice(count, min(1000, count), replace=False)
                    rows.append(recall_row(name, index, subset, sample))
                    index.close()
    return rows


def recall_row(name: str, index: VectorIndex, vectors: np.ndarray, sample: np.ndarray) -> dict[str, Any]:
    started = time.perf_counter()
    for item in sample[:200]:
        index.search(vectors[item], 11)
    ms = 1000 * (time.perf_counter() - started) / min(200, len(sample))
    search_k = "exact" if index.settings.exact else f"{index.settings.search_k_for(len(vectors), 11):,}"
    return {"index": name, "items": len(vectors), "trees": index.settings.trees, "search_k": search_k,
            "recall": recall_at_k(index, vectors, sample), "ms": ms}


def exact_twin(engine: AnnoyEngine) -> EngineData:
    """The engine's data with every segment scanned exactly (numpy over every vector)."""
    data = engine.data
    segments = tuple(dataclasses.replace(s, publication_index=None, sentence_index=None) for s in data.segments)
    return EngineData.of(segments, data.publications)


def single_segment(engine: AnnoyEngine) -> Any:
    """The engine's only segment (a build from scratch), whose rows follow the corpus."""
    (segment,) = engine.data.segments
    return segment


def measure_quality(
    engine: AnnoyEngine, corpus: list[Publication], settings: Settings, *, lexical: bool
) -> dict[str, float]:
    """Same-label precision@10 by id for 500 sampled publications (seed 42)."""
    labels = np.array([p.label or "" for p in corpus])
    queries = np.random.default_rng(42).choice(len(corpus), min(QUALITY_QUERIES, len(corpus)), replace=False)
    data = engine.data
    exact = exact_twin(engine)

    def precision(recommend: Any) -> float:
        shares = []
        for row in queries:
            got = recommend(int(row))
            shares.append(sum(labels[r] == labels[row] for r in got) / 10)
        return float(np.mean(shares))

    row_of = data.publications.row_of
    assert all(row_of[p.id] == i for i, p in enumerate(corpus)), "engine rows follow the corpus order"
    segment = single_segment(engine)
    result = {"annoy": precision(lambda r: [row_of[x.publication_id] for x in engine.recommend(
        Query(publication_id=corpus[r].id, k=10))])}

    def exact_rank(r: int) -> list[int]:
        query = Query(publication_id=corpus[r].id, k=10)
        return [row_of[x.publication_id] for x in rank(exact, query, engine.query_vectors(query))]

    result["exact"] = precision(exact_rank)
    vectors = np.asarray(segment.sentence_vectors, dtype=np.float32)
    starts = np.asarray(segment.starts)
    means = np.add.reduceat(vectors, starts[:-1], axis=0)
    means /= np.linalg.norm(means, axis=1, keepdims=True)

    def top10(scores: np.ndarray, own: int) -> list[int]:
        scores[own] = -np.inf
        top = np.argpartition(-scores, 10)[:10]
        return top.tolist()

    result["reference"] = precision(lambda r: top10(means @ means[r], r))

    def best_match_sum(r: int) -> list[int]:
        similarity = vectors[starts[r]:starts[r + 1]] @ vectors.T
        return top10(np.maximum.reduceat(similarity, starts[:-1], axis=1).sum(axis=0), r)

    result["maxsim"] = precision(best_match_sum)
    counts = np.unique(labels, return_counts=True)[1] / len(labels)
    result["random"] = float((counts**2).sum())
    if lexical:
        result["lexical"] = lexical_precision(settings, corpus, queries, labels)
    return result


def lexical_precision(settings: Settings, corpus: list[Publication], queries: np.ndarray, labels: np.ndarray) -> float:
    """The same precision for the lexical engine (NaN when its plugin is not installed)."""
    from recsys.registry import Registry

    registry = Registry.discover()
    if "lexical" not in registry.usable():
        return float("nan")
    engine = registry.get("lexical")(settings)
    engine.fit(corpus)
    label_of = {p.id: p.label or "" for p in corpus}
    shares = [sum(label_of[r.publication_id] == labels[row] for r in engine.recommend(
        Query(publication_id=corpus[row].id, k=10))) / 10 for row in queries]
    engine.close()
    return float(np.mean(shares))


def measure_known_item(engine: AnnoyEngine, corpus: list[Publication], queries: int = KNOWN_ITEM_QUERIES
                       ) -> dict[str, float]:
    """Known-item search: each sampled publication's title as a text query, against an
    engine built without titles; the rank of that publication in the top 10."""
    rng = np.random.default_rng(11)
    picked = rng.choice(len(corpus), min(queries, len(corpus)), replace=False)
    reciprocal, first, top10, timings = [], 0, 0, []
    for row in picked:
        pub = corpus[int(row)]
        started = time.perf_counter()
        got = [r.publication_id for r in engine.recommend(Query(text=pub.title, k=10))]
        timings.append(1000 * (time.perf_counter() - started))
        position = got.index(pub.id) if pub.id in got else None
        reciprocal.append(0.0 if position is None else 1.0 / (position + 1))
        first += position == 0
        top10 += position is not None
    p50, p99 = percentiles(timings)
    share = first / len(picked)
    return {"queries": len(picked), "recall1_se": float(np.sqrt(share * (1 - share) / len(picked))),
            "mrr10": float(np.mean(reciprocal)), "recall1": share,
            "recall10": top10 / len(picked), "p50_ms": p50, "p99_ms": p99}


def measure_evaluate(engine: AnnoyEngine, blind: AnnoyEngine, corpus: list[Publication], settings: Settings, *,
                     lexical: bool) -> list[dict[str, Any]]:
    """The measures of ``recsys evaluate`` (:func:`recsys.evaluate.evaluate`, seed 42): the
    engine (``blind``: built without titles, for known-item search) and the lexical engine."""
    from recsys.evaluate import draw_queries, evaluate, withhold_titles
    from recsys.registry import Registry

    queries = draw_queries(corpus)
    rows = [{"engine": "annoy", **evaluate(engine, queries, titles_withheld=blind)}]
    registry = Registry.discover()
    if lexical and "lexical" in registry.usable():
        plain, untitled = registry.get("lexical")(settings), registry.get("lexical")(settings)
        plain.fit(corpus)
        untitled.fit(withhold_titles(corpus))
        rows.append({"engine": "lexical", **evaluate(plain, queries, titles_withheld=untitled)})
        plain.close()
        untitled.close()
    return rows


def _normalised_means(vectors: np.ndarray, starts: np.ndarray) -> np.ndarray:
    means = np.add.reduceat(vectors, starts[:-1], axis=0)
    return means / np.linalg.norm(means, axis=1, keepdims=True)


def _top10(matrix: np.ndarray, queries: np.ndarray, own: np.ndarray | None) -> np.ndarray:
    scores = queries @ matrix.T
    if own is not None:
        scores[np.arange(len(own)), own] = -np.inf
    top = np.argpartition(-scores, 10, axis=1)[:, :10]
    order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
    return np.take_along_axis(top, order, axis=1)


def _agreement(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    overlap = [len(set(x) & set(y)) / 10 for x, y in zip(a.tolist(), b.tolist(), strict=True)]
    return {"overlap10": float(np.mean(overlap)), "same_list": float(np.mean([x == y for x, y in zip(
        a.tolist(), b.tolist(), strict=True)])), "same_top1": float(np.mean(a[:, 0] == b[:, 0]))}


def measure_float16(engine: AnnoyEngine, corpus: list[Publication], cache: Any) -> dict[str, Any]:
    """Rankings from the stored float16 sentence vectors against the float32 vectors they
    were rounded from (the vector cache), for 500 by-id queries (seed 42) and 300
    one-sentence texts (seed 3, query vectors in float32): top-10 overlap, identical top-10
    lists, p@10; and what rounding the publication vectors to float16 as well would change."""
    segment = single_segment(engine)
    texts = [s for p in corpus for s in publication_sentences(p)]
    found, full = cache.lookup(texts)
    assert found.all(), "the vector cache lacks sentences of the corpus"
    starts = np.asarray(segment.starts)
    stored16 = np.asarray(segment.sentence_vectors, dtype=np.float32)
    means32 = _normalised_means(full, starts).astype(np.float32)
    means16 = np.asarray(segment.publication_vectors, dtype=np.float32)  # from the float16 sentence vectors
    half_means = means16.astype(np.float16).astype(np.float32)
    labels = np.array([p.label or "" for p in corpus])
    queries = np.random.default_rng(42).choice(len(corpus), min(QUALITY_QUERIES, len(corpus)), replace=False)
    by_id = {"float32": _top10(means32, means32[queries], queries),
             "float16": _top10(means16, means16[queries], queries),
             "float16 means": _top10(half_means, half_means[queries], queries)}
    rng = np.random.default_rng(3)
    sentence_rows = np.array([int(starts[i + 1]) - 1 for i in rng.choice(len(corpus), 300)])
    text_queries = full[sentence_rows]
    by_text = {"float32": _top10(means32, text_queries, None), "float16": _top10(means16, text_queries, None),
               "float16 means": _top10(half_means, text_queries, None)}

    def precision(top: np.ndarray) -> float:
        return float(np.mean([(labels[row] == labels[query]).mean() for row, query in zip(top, queries,
                                                                                        strict=True)]))

    rounding = 1.0 - (stored16 * full).sum(axis=1) / np.linalg.norm(stored16, axis=1)
    return {
        "sentences": len(texts),
        "max_sentence_cos_loss": float(rounding.max()),
        "max_mean_cos_loss": float((1.0 - (means16 * means32).sum(axis=1)).max()),
        "by_id": _agreement(by_id["float32"], by_id["float16"]),
        "by_text": _agreement(by_text["float32"], by_text["float16"]),
        "by_id_half_means": _agreement(by_id["float16"], by_id["float16 means"]),
        "by_text_half_means": _agreement(by_text["float16"], by_text["float16 means"]),
        "p10_float32": precision(by_id["float32"]), "p10_float16": precision(by_id["float16"]),
        "p10_half_means": precision(by_id["float16 means"]),
    }


def compare_engines(one: AnnoyEngine, other: AnnoyEngine, corpus: list[Publication]) -> dict[str, Any]:
    """How alike two engines over the same corpus answer: every by-id query and 200
    one-sentence texts (seed 3), k=10."""
    rng = np.random.default_rng(3)
    texts = [publication_sentences(corpus[i])[-1] for i in rng.choice(len(corpus), 200)]
    queries = [Query(publication_id=p.id, k=10) for p in corpus] + [Query(text=t, k=10) for t in texts]
    same = overlap = 0.0
    worst = 0.0
    for query in queries:
        mine, theirs = one.recommend(query), other.recommend(query)
        ids, other_ids = [r.publication_id for r in mine], [r.publication_id for r in theirs]
        same += ids == other_ids
        overlap += len(set(ids) & set(other_ids)) / 10
        if ids == other_ids:
            worst = max(worst, max(abs(a.score - b.score) for a, b in zip(mine, theirs, strict=True)))
    return {"queries": len(queries), "same_list": same / len(queries), "overlap10": overlap / len(queries),
            "max_score_diff": worst}


def measure_memory(folder: Path, corpus: list[Publication], settings: Settings) -> list[dict[str, Any]]:
    """Two processes load the engine and answer the same 300 by-id and 100 text queries;
    their /proc/<pid>/smaps say what they share and what each holds privately."""
    ids = [p.id for p in corpus[:: max(1, len(corpus) // 300)]][:300]
    texts = [publication_sentences(p)[-1] for p in corpus[1:: max(1, len(corpus) // 100)]][:100]
    cache = str(settings.effective_cache_dir)
    script = (
        "import sys, json; from pathlib import Path; from recsys.config import Settings; "
        "from recsys.domain import Query; from recsys_engine_annoy import AnnoyEngine; "
        f"e = AnnoyEngine.load(Path({str(folder)!r}), Settings(cache_dir=Path({cache!r}))); "
        "queries = json.loads(sys.stdin.readline()); "
        "[e.recommend(Query(publication_id=i, k=10)) for i in queries['ids']]; "
        "[e.recommend(Query(text=t, k=10)) for t in queries['texts']]; "
        "print('ready', flush=True); sys.stdin.read()"
    )
    # this checkout's core and plugin first (not an installed copy of the plugin)
    paths = [str(ROOT), str(ROOT / "plugins" / "recsys-engine-annoy"), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    children = [subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 text=True, env=env) for _ in range(2)]
    rows = []
    try:
        for child in children:
            assert child.stdin is not None
            child.stdin.write(json.dumps({"ids": ids, "texts": texts}) + "\n")
            child.stdin.flush()
        for child in children:
            assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        for number, child in enumerate(children, start=1):
            total, files = smaps_summary(child.pid), smaps_summary(child.pid, folder)
            rows.append({"process": number, "total": dataclasses.asdict(total), "files": dataclasses.asdict(files),
                         "file_mb": sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20})
    finally:
        for child in children:
            if child.stdin is not None:
                child.stdin.close()
            child.wait(timeout=60)
    return rows


def measure_archive(corpus: list[Publication], previous: Path, settings: Settings) -> dict[str, Any]:
    """Build the archive of the largest engine with ``recsys.build.build_archive`` (reusing
    its vectors), verify it, and serve a recommendation from it. The archive is kept beside
    the engine (``archive-<engine folder>.zip``), for ``recsys verify`` and ``recsys recommend --archive``."""
    from recsys import archive
    from recsys.build import build_archive
    from recsys.load import load_engine
    from recsys.registry import Registry

    registry = Registry.discover()
    out = previous.parent / f"archive-{previous.name}.zip"
    started = time.perf_counter()
    build_archive(corpus, out, engine="annoy", registry=registry, settings=settings, previous=previous)
    built = time.perf_counter() - started
    started = time.perf_counter()
    verified = archive.verify(out, archive.Limits.from_settings(settings), engines=registry.names())
    verify_s = time.perf_counter() - started
    with tempfile.TemporaryDirectory(dir=previous.parent) as tmp:
        archive.unpack(out, Path(tmp) / "unpacked", engines=registry.names())
        with load_engine(Path(tmp) / "unpacked", registry=registry, settings=settings) as engine:
            served = len(engine.recommend(Query(text="Large language models for code generation.", k=10)))
    return {"size_mb": verified.size / 1e6, "build_s": built, "verify_s": verify_s, "served": served,
            "files": len(verified.manifest.files), "path": str(out)}
