"""Measure what an incremental build of the lexical engine ships, and its query latency.

On a seeded sample of real papers (default 1,000): build from scratch and save, then
apply ``--rounds`` successive changes of ``--change`` of the corpus (a third of them
replaced: same id, another paper's abstract; a third added; a third removed), each an
incremental build with ``previous`` = the last saved folder. For each round it prints
the share of the engine's bytes that are new (files whose sha256 the previous folder
does not hold: what a worker machine downloads), the segment count, what was merged,
and the largest relative score difference against a from-scratch build over the same
corpus (text and by-id queries). Query p50/p95 (k = 10; each query's best of 7 runs)
are measured on the loaded, memory-mapped engines: the first from-scratch build and the
last incremental one.

    python plugins/recsys-engine-lexical/benchmarks/segments.py [--size 1000] [--rounds 12] [--change 0.01]

The dataset defaults to ``../shared/data/publications/publications.jsonl.gz`` beside
the repository (or ``RECSYS_BENCH_DATA``); without it the script says so and exits 0.
It prints numbers; it asserts nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from recsys.domain import Publication, Query, Recommendation
from recsys.sources import FileSource, load_publications
from recsys_engine_lexical import LexicalEngine

REPO = Path(__file__).resolve().parents[3]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "publications" / "publications.jsonl.gz"
SEED = 42
LATENCY_QUERIES = 200
REPEATS = 7
EQUALITY_QUERIES = 40


def _hashes(folder: Path) -> dict[str, tuple[str, int]]:
    found = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            found[path.relative_to(folder).as_posix()] = (digest, path.stat().st_size)
    return found


def _latencies(engine: LexicalEngine, queries: list[Query]) -> tuple[float, float]:
    """p50 and p95 over the queries of each query's best of REPEATS runs (ms): on a shared
    machine, the best run is the query's own cost, without the neighbours' load."""
    timings = []
    for query in queries:
        best = float("inf")
        for _ in range(REPEATS):
            started = time.perf_counter()
            engine.recommend(query)
            best = min(best, time.perf_counter() - started)
        timings.append(best * 1000)
    ordered = sorted(timings)
    return statistics.median(timings), ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


def _difference(expected: list[Recommendation], actual: list[Recommendation]) -> float | None:
    """Largest relative score difference, or None when the ids or their order differ."""
    if [r.publication_id for r in expected] != [r.publication_id for r in actual]:
        return None
    return max((abs(a.score - b.score) / max(abs(a.score), 1e-30) for a, b in zip(expected, actual, strict=True)),
               default=0.0)


def _change(corpus: list[Publication], spare: list[Publication], count: int, rng: random.Random) -> list[Publication]:
    """``corpus`` with ``count`` publications changed: replaced, added (from ``spare``), removed."""
    replaced, added = count // 3, count // 3
    removed = count - replaced - added
    picks = rng.sample(range(len(corpus)), replaced + removed)
    out = list(corpus)
    for i in picks[:replaced]:
        donor = spare.pop()
        out[i] = dataclasses.replace(out[i], abstract=donor.abstract)
    gone = {corpus[i].id for i in picks[replaced:]}
    out = [p for p in out if p.id not in gone]
    out += [spare.pop() for _ in range(added)]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("RECSYS_BENCH_DATA", DEFAULT_DATA)))
    parser.add_argument("--size", type=int, default=1000, help="publications in the corpus")
    parser.add_argument("--rounds", type=int, default=12, help="successive incremental builds")
    parser.add_argument("--change", type=float, default=0.01, help="share of the corpus changed per round")
    args = parser.parse_args()
    if not args.data.exists():
        print(f"dataset {args.data} not found: set RECSYS_BENCH_DATA or pass --data; nothing measured")
        return 0
    everything = load_publications(FileSource(args.data))
    rng = random.Random(SEED)
    count = max(1, round(args.change * args.size))
    pool = rng.sample(everything, min(len(everything), args.size + args.rounds * count))
    corpus, spare = pool[: args.size], pool[args.size:]
    print(f"dataset: {args.data.name}; {len(corpus)} publications, {args.rounds} rounds of {count} changed")

    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        engine = LexicalEngine()
        engine.fit(corpus)
        folder = base / "r00"
        folder.mkdir()
        engine.save(folder)
        first = folder
        layout = "segments" if (folder / "segments.json").exists() else "first-wave"
        total = sum(size for _, size in _hashes(folder).values())
        print(f"layout: {layout}; from scratch: {total / 1e6:.2f} MB")
        print("round | pubs | engine kB | new kB | share new | files new/all | segments | merged | max rel diff | fit")
        shares = []
        for number in range(1, args.rounds + 1):
            corpus = _change(corpus, spare, count, rng)
            before = _hashes(folder)
            held = {sha for sha, _ in before.values()}
            started = time.perf_counter()
            engine = LexicalEngine()
            engine.fit(corpus, previous=folder)
            fit_s = time.perf_counter() - started
            nxt = base / f"r{number:02d}"
            nxt.mkdir()
            metadata = engine.save(nxt)
            after = _hashes(nxt)
            assert _hashes(folder) == before, "the incremental build changed a file of previous"
            new = sum(size for sha, size in after.values() if sha not in held)
            total = sum(size for _, size in after.values())
            shares.append(new / total)
            info = metadata.extra.get("segments", {})
            scratch = LexicalEngine()
            scratch.fit(corpus)
            probes = [Query(text=f"{p.title}. {p.abstract}", k=10) for p in corpus[:: len(corpus) // EQUALITY_QUERIES]]
            probes += [Query(publication_id=p.id, k=10) for p in corpus[5 :: len(corpus) // EQUALITY_QUERIES]]
            loaded = LexicalEngine.load(nxt)
            diffs = [_difference(scratch.recommend(q), loaded.recommend(q)) for q in probes]
            loaded.close()
            worst = "ORDER DIFFERS" if None in diffs else f"{max(d for d in diffs if d is not None):.1e}"
            print(
                f"{number} | {len(corpus)} | {total / 1e3:.0f} | {new / 1e3:.1f} | {100 * new / total:.1f}% | "
                f"{sum(sha not in held for sha, _ in after.values())}/{len(after)} | {info.get('count', 1)} | "
                f"{json.dumps(info.get('merged', []))} | {worst} | {fit_s:.2f}s",
                flush=True,
            )
            folder = nxt
        print(f"share new per round: first {100 * shares[0]:.1f}%, median {100 * statistics.median(shares):.1f}%, "
              f"mean {100 * statistics.fmean(shares):.1f}%, max {100 * max(shares):.1f}%")

        picks = random.Random(SEED).sample(corpus, min(LATENCY_QUERIES, len(corpus)))
        for name, where in (("from scratch (round 0)", first), (f"incremental (round {args.rounds})", folder)):
            with LexicalEngine.load(where) as loaded:
                assert isinstance(loaded, LexicalEngine)
                text = _latencies(loaded, [Query(text=f"{p.title}. {p.abstract}", k=10) for p in picks])
                by_id = _latencies(loaded, [Query(publication_id=p.id, k=10) for p in picks if _held(loaded, p.id)])
            print(f"query {name}: text p50/p95 {text[0]:.2f}/{text[1]:.2f} ms, by id p50/p95 "
                  f"{by_id[0]:.2f}/{by_id[1]:.2f} ms")
    return 0


def _held(engine: LexicalEngine, publication_id: str) -> bool:
    try:
        engine.recommend(Query(publication_id=publication_id, k=1))
    except Exception:  # noqa: BLE001 - UnknownPublication: not in this engine
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
