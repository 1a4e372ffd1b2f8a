"""Measure the lexical engine on the real publications dataset.

For each corpus size: build time (fit), save and load time, files on disk, query
latency (p50/p95 of text and by-id queries on the loaded, memory-mapped engine),
and same-label precision@10 of by-id recommendations for 500 publications sampled
with seed 42 (self excluded; the label is the arXiv primary category).

    python plugins/recsys-engine-lexical/benchmarks/lexical.py [--sizes 2000,all] [--no-stemming]

The dataset defaults to ``../shared/data/publications/publications.jsonl.gz``
beside the repository (or ``RECSYS_BENCH_DATA``); without it the script says so
and exits 0. It prints numbers; it asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

from recsys.domain import Publication, Query
from recsys.sources import FileSource, load_publications
from recsys_engine_lexical import LexicalEngine

REPO = Path(__file__).resolve().parents[3]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "publications" / "publications.jsonl.gz"
SEED = 42
PRECISION_QUERIES = 500
LATENCY_QUERIES = 200


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _latencies(engine: LexicalEngine, queries: list[Query]) -> list[float]:
    timings = []
    for query in queries:
        started = time.perf_counter()
        engine.recommend(query)
        timings.append((time.perf_counter() - started) * 1000)
    return timings


def measure(publications: list[Publication], stemming: bool) -> dict[str, float]:
    rng = random.Random(SEED)
    results: dict[str, float] = {"publications": len(publications)}
    engine = LexicalEngine(stemming=stemming)
    started = time.perf_counter()
    engine.fit(publications)
    results["build_s"] = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        metadata = engine.save(folder)
        results["save_s"] = time.perf_counter() - started
        results["sentences"] = metadata.sentences
        results["terms"] = metadata.extra["terms"]
        results["disk_mb"] = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20
        engine.close()
        started = time.perf_counter()
        loaded = LexicalEngine.load(folder)
        results["load_s"] = time.perf_counter() - started

        picks = rng.sample(publications, min(LATENCY_QUERIES, len(publications)))
        text_ms = _latencies(loaded, [Query(text=f"{p.title}. {p.abstract}", k=10) for p in picks])
        id_ms = _latencies(loaded, [Query(publication_id=p.id, k=10) for p in picks])
        results.update(
            text_p50_ms=statistics.median(text_ms), text_p95_ms=_percentile(text_ms, 0.95),
            id_p50_ms=statistics.median(id_ms), id_p95_ms=_percentile(id_ms, 0.95),
        )

        sample = random.Random(SEED).sample(range(len(publications)), min(PRECISION_QUERIES, len(publications)))
        label_of = {p.id: p.label for p in publications}
        shares = []
        for i in sample:
            pub = publications[i]
            recs = loaded.recommend(Query(publication_id=pub.id, k=10))
            shares.append(sum(label_of[r.publication_id] == pub.label for r in recs) / 10)
        results["precision_at_10"] = statistics.fmean(shares)
        loaded.close()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("RECSYS_BENCH_DATA", DEFAULT_DATA)))
    parser.add_argument("--sizes", default="2000,all", help="comma-separated corpus sizes, 'all' for every record")
    parser.add_argument("--no-stemming", action="store_true", help="index words without folding plurals")
    args = parser.parse_args()
    if not args.data.exists():
        print(f"dataset {args.data} not found: set RECSYS_BENCH_DATA or pass --data; nothing measured")
        return 0
    everything = load_publications(FileSource(args.data))
    print(f"dataset: {args.data.name}, {len(everything)} publications; stemming={'off' if args.no_stemming else 'on'}")
    header = ("pubs", "sentences", "terms", "build s", "save s", "load s", "disk MB",
              "text p50/p95 ms", "id p50/p95 ms", "P@10 by id")
    print(" | ".join(header))
    for size in args.sizes.split(","):
        n = len(everything) if size == "all" else int(size)
        corpus = everything if n >= len(everything) else random.Random(SEED).sample(everything, n)
        r = measure(corpus, stemming=not args.no_stemming)
        print(
            f"{r['publications']:.0f} | {r['sentences']:.0f} | {r['terms']:.0f} | {r['build_s']:.1f} | "
            f"{r['save_s']:.2f} | {r['load_s']:.2f} | {r['disk_mb']:.0f} | "
            f"{r['text_p50_ms']:.1f}/{r['text_p95_ms']:.1f} | {r['id_p50_ms']:.1f}/{r['id_p95_ms']:.1f} | "
            f"{r['precision_at_10']:.3f}",
            flush=True,
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of this process: {peak:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
