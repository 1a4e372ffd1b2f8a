"""What ``benchmarks/engine.py`` measures on a built engine: latency, recall, quality, memory, archive."""

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
from recsys_engine_annoy.ranking import rank

__all__ = [
    "exact_twin",
    "measure_archive",
    "measure_latency",
    "measure_memory",
    "measure_quality",
    "measure_recall",
]

#: By-id queries of the quality measure (sampled with seed 42).
QUALITY_QUERIES = 500


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
    """Recall@10 of both indexes against exact search; ``sweep`` adds sentence indexes over
    the first 1,000 to 200,000 sentence vectors."""
    data = engine.data
    rows = []
    rng = np.random.default_rng(5)
    sentence_vectors = np.asarray(data.sentence_vectors, dtype=np.float32)
    for name, index, vectors in (("sentences", data.sentence_index, sentence_vectors),
                                 ("publications", data.publication_index, np.asarray(data.publication_vectors))):
        sample = rng.choice(len(vectors), min(1000, len(vectors)), replace=False)
        rows.append(recall_row(name, index, vectors, sample))
    if sweep:
        for count in (1_000, 10_000, 30_000, 100_000, 200_000):
            if count < len(sentence_vectors):
                subset = sentence_vectors[:count]
                index = VectorIndex.build(subset, AnnSettings.for_items(count))
                sample = rng.choice(count, min(1000, count), replace=False)
                rows.append(recall_row("sentences (prefix)", index, subset, sample))
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


def exact_twin(engine: AnnoyEngine) -> Any:
    """The engine's data with both indexes searched exactly (numpy over every vector)."""
    data = engine.data
    sentences = np.asarray(data.sentence_vectors, dtype=np.float32)
    papers = np.asarray(data.publication_vectors, dtype=np.float32)
    return dataclasses.replace(
        data,
        sentence_index=data.sentence_index.with_settings(
            dataclasses.replace(data.sentence_index.settings, exact=True), sentences),
        publication_index=data.publication_index.with_settings(
            dataclasses.replace(data.publication_index.settings, exact=True), papers),
    )


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
    result = {"annoy": precision(lambda r: [row_of[x.publication_id] for x in engine.recommend(
        Query(publication_id=corpus[r].id, k=10))])}

    def exact_rank(r: int) -> list[int]:
        query = Query(publication_id=corpus[r].id, k=10)
        return [row_of[x.publication_id] for x in rank(exact, query, engine.query_vectors(query))]

    result["exact"] = precision(exact_rank)
    vectors = np.asarray(data.sentence_vectors, dtype=np.float32)
    starts = np.asarray(data.starts)
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
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
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
                         "file_mb": sum(p.stat().st_size for p in folder.iterdir()) / 2**20})
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
