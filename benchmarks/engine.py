"""The default engine (`annoy`) on the real corpus: build speed, rebuilds, latency, recall, quality, memory.

    nice -n 10 python benchmarks/engine.py [--sizes 2000,10000,all] [--backends auto,onnx-int8]
                                            [--data PATH] [--cache DIR] [--rebuild] [--skip WHAT] [--write-docs]

For each size (a seeded random sample of the corpus; the smaller ones lie inside the
larger) and each embedding backend it measures:

* build: sentences, sentences/s against the raw torch encode rate on a fixed sample of
  10,000 sentences measured in the same run, index size on disk, peak memory (each
  build runs in a child process of its own);
* rebuild after changing 1% of the publications (every sentence of each changed
  publication is new) against the full build;
* p50/p99 latency of a one-sentence text query and of a by-id query, in-process;
* recall@10 of both Annoy indexes against exact search over the same vectors (and, at
  the largest size, for sentence indexes of 1,000 to all sentences);
* same-label precision@10 of by-id recommendations for 500 sampled publications
  (seed 42): annoy, the same engine with exact search, the reference method (exact
  cosine of per-paper mean sentence vectors, in plain numpy), the sum of each query
  sentence's best match (the issue's alternative), and the lexical engine;
* memory of two processes serving the largest engine (shared vs private);
* the archive of the largest engine: size, ``recsys.archive.verify``, a recommendation.

Built engines are kept under the cache folder (``~/.cache/recsys-bench`` or
``RECSYS_BENCH_CACHE``) with the timings measured when they were built, so a rerun does
not encode 320,000 sentences again; ``--rebuild`` measures builds again. Prints a
markdown report; ``--write-docs`` writes it into docs/benchmarks.md (engine section).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    ROOT,
    cache_dir,
    command_line,
    dataset_path,
    nested_sample,
    peak_rss_mb,
    percentiles,
    read_publications,
    smaps_summary,
    write_section,
)

from recsys.config import Settings  # noqa: E402
from recsys.domain import Publication, Query  # noqa: E402
from recsys_engine_annoy import AnnoyEngine  # noqa: E402
from recsys_engine_annoy.ann import AnnSettings, VectorIndex, recall_at_k  # noqa: E402
from recsys_engine_annoy.corpus import publication_sentences  # noqa: E402
from recsys_engine_annoy.encoders import build_threads, make_encoder, resolve_backend  # noqa: E402
from recsys_engine_annoy.model import resolve_model  # noqa: E402
from recsys_engine_annoy.ranking import rank  # noqa: E402

SAMPLE_SENTENCES = 10_000
QUALITY_QUERIES = 500
CHANGED_SHARE = 0.01
SKIPPABLE = ("rebuild", "latency", "recall", "quality", "lexical", "memory", "archive")


def log(message: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


# -- the corpus, its sizes and the cache ------------------------------------------


@dataclasses.dataclass
class Bench:
    args: argparse.Namespace
    publications: list[Publication]
    data_path: Path
    root: Path  # the cache folder of this dataset and model
    settings: Settings

    def corpus(self, size: int) -> list[Publication]:
        return nested_sample(self.publications, size)

    def engine_folder(self, size: int, backend: str) -> Path:
        return self.root / f"{backend}-{size}"


def open_bench(args: argparse.Namespace) -> Bench:
    data = dataset_path(args.data)
    publications = read_publications(data)
    data_hash = hashlib.sha256(data.read_bytes()).hexdigest()[:12]
    base = cache_dir(args.cache)
    settings = Settings(data_dir=base / "data", cache_dir=base / "models")
    model = resolve_model(settings)
    root = base / "engine" / f"{data_hash}-{model.short_hash[:12]}"
    root.mkdir(parents=True, exist_ok=True)
    log(f"{len(publications)} publications from {data}; cache {root}")
    return Bench(args, publications, data, root, settings)


def parse_sizes(text: str, total: int) -> list[int]:
    return sorted({total if part == "all" else min(total, int(part)) for part in text.split(",")})


def concrete_backend(name: str) -> str:
    return resolve_backend(Settings(embedding_backend=name)) if name == "auto" else name


# -- the encode-rate sample ---------------------------------------------------------


def sentence_sample(publications: list[Publication], count: int = SAMPLE_SENTENCES) -> list[str]:
    """A fixed sample of ``count`` sentences of the whole corpus (seed 42)."""
    sentences = [s for pub in publications for s in publication_sentences(pub)]
    picked = np.random.default_rng(42).choice(len(sentences), min(count, len(sentences)), replace=False)
    return [sentences[i] for i in sorted(picked)]


def measure_sample(bench: Bench, backends: list[str]) -> dict[str, Any]:
    """Encode rates of torch (plain SentenceTransformer.encode, batches of 32) and of each
    backend on the sample, and each backend's cosine to torch.

    The backends take turns on chunks of 64 sentences, in an order that rotates, so that
    a busy spell of the shared machine slows them all alike instead of one of them.
    """
    sample = sentence_sample(bench.publications, bench.args.sample)
    model = resolve_model(bench.settings)
    names = ["torch", *[b for b in backends if b != "torch"]]
    encoders = {name: make_encoder(model, name, bench.settings, threads=build_threads()) for name in names}
    seconds = dict.fromkeys(names, 0.0)
    parts: dict[str, list[np.ndarray]] = {name: [] for name in names}
    log(f"encoding the {len(sample)}-sentence sample with {', '.join(names)} in turns")
    for encoder in encoders.values():
        encoder.encode(sample[:64], batch_size=32)  # warm-up
    order = np.argsort([-len(s) for s in sample], kind="stable")  # batches of similar length, as in a build
    for turn, start in enumerate(range(0, len(sample), 64)):
        rows = order[start:start + 64]
        chunk = [sample[i] for i in rows]
        for name in names[turn % len(names):] + names[:turn % len(names)]:
            encoder = encoders[name]
            started = time.perf_counter()
            vectors = encoder.encode(chunk, batch_size=bench.settings.embedding_batch_size)
            seconds[name] += time.perf_counter() - started
            parts[name].append(vectors)
    results: dict[str, Any] = {"sentences": len(sample), "threads": build_threads(), "backends": {},
                               "load": list(os.getloadavg()),
                               "measured_at": datetime.now(UTC).isoformat(timespec="seconds")}
    reference = np.concatenate(parts["torch"])  # all backends hold the sample in the same (sorted) order
    for name in names:
        encoders[name].close()
        entry: dict[str, Any] = {"seconds": seconds[name], "rate": len(sample) / seconds[name]}
        if name != "torch":
            cosines = (np.concatenate(parts[name]) * reference).sum(axis=1)
            entry.update(cos_mean=float(cosines.mean()), cos_min=float(cosines.min()),
                         share_identical=float((cosines >= 0.9999).mean()))
        results["backends"][name] = entry
        log(f"  {name}: {entry['rate']:.0f} sentences/s")
    return results


# -- builds, each in a child process ---------------------------------------------------


def child_build(spec: dict[str, Any]) -> None:
    """Run one build (in a child process) and print its measurements as JSON."""
    publications = nested_sample(read_publications(Path(spec["data"])), spec["size"])
    if spec.get("change"):
        publications = changed_corpus(publications, CHANGED_SHARE)
    settings = Settings(data_dir=Path(spec["data_dir"]), cache_dir=Path(spec["cache_dir"]),
                        embedding_backend=spec["backend"])
    engine = AnnoyEngine(settings)
    out = Path(spec["out"])
    started = time.perf_counter()
    engine.fit(publications, previous=Path(spec["previous"]) if spec.get("previous") else None)
    fit_seconds = time.perf_counter() - started
    out.mkdir(parents=True)
    engine.save(out)
    seconds = time.perf_counter() - started
    print(json.dumps({
        "seconds": seconds, "fit_seconds": fit_seconds, "stats": engine.build_stats,
        "peak_rss_mb": peak_rss_mb(), "disk_mb": folder_mb(out), "index_mb": folder_mb(out, ".ann"),
        "built_at": datetime.now(UTC).isoformat(timespec="seconds"), "backend": engine.info.backend,
        "trees": engine.info.sentence_index.trees,
    }))


def changed_corpus(publications: list[Publication], share: float) -> list[Publication]:
    """The corpus with ``share`` of its publications (seed 7) rewritten: every sentence new."""
    rng = np.random.default_rng(7)
    picked = set(rng.choice(len(publications), max(1, round(share * len(publications))), replace=False).tolist())
    return [
        dataclasses.replace(p, abstract=" ".join(f"Revised: {s}" for s in publication_sentences(p)[1:]) or "Revised.")
        if i in picked else p
        for i, p in enumerate(publications)
    ]


def folder_mb(folder: Path, suffix: str = "") -> float:
    return sum(p.stat().st_size for p in folder.iterdir() if p.name.endswith(suffix)) / 1e6


def run_build(bench: Bench, size: int, backend: str, out: Path, *, previous: Path | None = None,
              change: bool = False) -> dict[str, Any]:
    spec = {"data": str(bench.data_path), "size": size, "backend": backend, "out": str(out),
            "previous": str(previous) if previous else None, "change": change,
            "data_dir": str(bench.settings.data_dir), "cache_dir": str(bench.settings.effective_cache_dir)}
    log(f"building {size} publications with {backend}" + (" (1% changed, reusing vectors)" if change else ""))
    done = subprocess.run([sys.executable, __file__, "--child-build", json.dumps(spec)], capture_output=True,
                          text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"the build of {size} publications with {backend} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    log(f"  {result['seconds']:.1f} s, {result['stats']['encoded']:.0f} sentences encoded")
    return result


def ensure_build(bench: Bench, size: int, backend: str) -> dict[str, Any]:
    folder = bench.engine_folder(size, backend)
    record = folder.with_suffix(".json")
    if not bench.args.rebuild and record.is_file() and (folder / "engine.json").is_file():
        result: dict[str, Any] = json.loads(record.read_text())
        return result
    shutil.rmtree(folder, ignore_errors=True)
    result = run_build(bench, size, backend, folder)
    record.write_text(json.dumps(result, indent=2))
    return result


# -- measurements on a built engine ------------------------------------------------------


def measure_rebuild(bench: Bench, size: int, backend: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(dir=bench.root) as tmp:
        return run_build(bench, size, backend, Path(tmp) / "engine", previous=bench.engine_folder(size, backend),
                         change=True)


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


def measure_quality(bench: Bench, engine: AnnoyEngine, corpus: list[Publication], lexical: bool) -> dict[str, float]:
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
        result["lexical"] = lexical_precision(bench, corpus, queries, labels)
    return result


def lexical_precision(bench: Bench, corpus: list[Publication], queries: np.ndarray, labels: np.ndarray) -> float:
    from recsys.registry import Registry

    registry = Registry.discover()
    if "lexical" not in registry.usable():
        return float("nan")
    engine = registry.get("lexical")(bench.settings)
    engine.fit(corpus)
    label_of = {p.id: p.label or "" for p in corpus}
    shares = [sum(label_of[r.publication_id] == labels[row] for r in engine.recommend(
        Query(publication_id=corpus[row].id, k=10))) / 10 for row in queries]
    engine.close()
    return float(np.mean(shares))


def measure_memory(bench: Bench, folder: Path, corpus: list[Publication]) -> list[dict[str, Any]]:
    """Two processes load the engine and answer queries; their smaps say what they share."""
    ids = [p.id for p in corpus[:: max(1, len(corpus) // 300)]]
    script = (
        "import sys, json; from pathlib import Path; from recsys.config import Settings; "
        "from recsys.domain import Query; from recsys_engine_annoy import AnnoyEngine; "
        f"e = AnnoyEngine.load(Path({str(folder)!r}), Settings(cache_dir=Path({str(bench.settings.cache_dir)!r}))); "
        f"[e.recommend(Query(publication_id=i, k=10)) for i in {ids!r}]; "
        "[e.recommend(Query(text=t, k=10)) for t in ('Graph neural networks.', 'Robots learn to walk.')]; "
        "print('ready', flush=True); sys.stdin.read()"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    children = [subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 text=True, env=env) for _ in range(2)]
    rows = []
    try:
        for child in children:
            assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        for number, child in enumerate(children, start=1):
            total, files = smaps_summary(child.pid), smaps_summary(child.pid, folder)
            rows.append({"process": number, "total": dataclasses.asdict(total), "files": dataclasses.asdict(files)})
    finally:
        for child in children:
            if child.stdin is not None:
                child.stdin.close()
            child.wait(timeout=60)
    return rows


def measure_archive(bench: Bench, corpus: list[Publication], previous: Path) -> dict[str, Any]:
    """Build the archive of the largest engine with ``recsys.build.build_archive`` (reusing
    its vectors), verify it, and serve a recommendation from it. The archive is kept in the
    cache, for ``recsys verify`` and ``recsys recommend --archive``."""
    from recsys import archive
    from recsys.build import build_archive, load_engine
    from recsys.registry import Registry

    registry = Registry.discover()
    out = bench.root / f"archive-{previous.name}.zip"
    started = time.perf_counter()
    build_archive(corpus, out, engine="annoy", registry=registry, settings=bench.settings, previous=previous)
    built = time.perf_counter() - started
    started = time.perf_counter()
    verified = archive.verify(out, archive.Limits.from_settings(bench.settings), engines=registry.names())
    verify_s = time.perf_counter() - started
    with tempfile.TemporaryDirectory(dir=bench.root) as tmp:
        archive.unpack(out, Path(tmp) / "unpacked", engines=registry.names())
        with load_engine(Path(tmp) / "unpacked", registry=registry, settings=bench.settings) as engine:
            served = len(engine.recommend(Query(text="Large language models for code generation.", k=10)))
    return {"size_mb": verified.size / 1e6, "build_s": built, "verify_s": verify_s, "served": served,
            "files": len(verified.manifest.files), "path": str(out)}


# -- the report ----------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="2000,10000,all", help="publications per run, 'all' = whole corpus")
    parser.add_argument("--backends", default="auto,onnx-int8", help="embedding backends to build with")
    parser.add_argument("--data", help="the publications JSONL(.gz) (default: ../shared/data/publications/...)")
    parser.add_argument("--cache", help="cache folder (default: ~/.cache/recsys-bench or RECSYS_BENCH_CACHE)")
    parser.add_argument("--rebuild", action="store_true", help="measure builds again instead of using cached ones")
    parser.add_argument("--resample", action="store_true", help="measure the encode-rate sample again")
    parser.add_argument("--skip", default="", help=f"comma-separated parts to skip: {', '.join(SKIPPABLE)}")
    parser.add_argument("--write-docs", action="store_true", help="write the report into docs/benchmarks.md")
    parser.add_argument("--sample", type=int, default=SAMPLE_SENTENCES, help="sentences of the encode-rate sample")
    parser.add_argument("--child-build", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_build:
        child_build(json.loads(args.child_build))
        return
    from _engine_report import Report  # the markdown tables

    skip = {s for s in args.skip.split(",") if s}
    if skip - set(SKIPPABLE):
        parser.error(f"unknown part(s) to skip: {', '.join(sorted(skip - set(SKIPPABLE)))}")
    bench = open_bench(args)
    sizes = parse_sizes(args.sizes, len(bench.publications))
    backends = list(dict.fromkeys(concrete_backend(b) for b in args.backends.split(",")))
    default = concrete_backend("auto")
    report = Report(command_line(), bench.publications)
    sample_file = bench.root / "sample.json"
    builds_cached = all((bench.engine_folder(s, b).with_suffix(".json")).is_file() for s in sizes for b in backends)
    if args.rebuild or args.resample or not builds_cached or not sample_file.is_file():
        sample_file.write_text(json.dumps(measure_sample(bench, backends), indent=2))
    report.sample = json.loads(sample_file.read_text())
    for size in sizes:
        corpus = bench.corpus(size)
        for backend in backends:
            build = ensure_build(bench, size, backend)
            report.add_build(size, backend, build)
            if "rebuild" not in skip and backend == default:
                report.add_rebuild(size, backend, measure_rebuild(bench, size, backend), build)
            engine = AnnoyEngine.load(bench.engine_folder(size, backend), bench.settings.replace(
                embedding_backend=backend))
            if "latency" not in skip:
                report.add_latency(size, backend, measure_latency(engine, corpus))
            if "recall" not in skip and backend == default:
                report.add_recall(size, measure_recall(engine, sweep=size == sizes[-1]))
            if "quality" not in skip:
                log(f"quality of {size} publications ({backend})")
                lexical = "lexical" not in skip and backend == default
                report.add_quality(size, backend, measure_quality(bench, engine, corpus, lexical))
            engine.close()
    largest = bench.engine_folder(sizes[-1], default)
    if "memory" not in skip:
        report.memory = measure_memory(bench, largest, bench.corpus(sizes[-1]))
    if "archive" not in skip:
        log("building and verifying the archive of the largest engine")
        report.archive = measure_archive(bench, bench.corpus(sizes[-1]), largest)
    text = report.render(sizes)
    print(text)
    if args.write_docs:
        write_section("engine", text)
        log("wrote docs/benchmarks.md (engine section)")


if __name__ == "__main__":
    main()
