"""The default engine (`annoy`) on the real corpus: size, builds, rebuilds, deltas, latency, quality.

    nice -n 10 python benchmarks/engine.py [--sizes 1000,2000,10000,all] [--backends onnx,onnx-int8]
                                            [--data PATH] [--cache DIR] [--rebuild] [--skip WHAT] [--write-docs]

For each size (a seeded random sample of the corpus; the smaller ones lie inside the
larger) and each embedding backend it measures:

* the sentence vectors: every distinct sentence of the corpus is encoded once per backend
  into a float32 cache (``_engine_vectors.py``), with the encode rate at full scale; builds
  take their vectors from it, so a build's time is measured without encoding, and a full
  build's encoding is that measured rate (both are reported);
* build: seconds, engine size on disk by kind of file, peak memory (each build runs in a
  child process of its own);
* rebuild after changing 1% of the publications (every sentence but the title of each
  changed publication is new, and encoded for real), and the share of the engine's bytes a
  machine that holds the previous version must download (files whose sha256 it lacks),
  after 1% and 10% changes;
* p50/p99 latency of a one-sentence text query and of a by-id query, in-process;
* recall@10 of the Annoy indexes against exact search over the same vectors (for segments
  that have them, and, at the largest size, for indexes over 1,000 to 200,000 sentences);
* same-label precision@10 of by-id recommendations for 500 sampled publications
  (seed 42): the engine, exact search, the reference method, the sum of best sentence
  matches, and the lexical engine;
* known-item search: for 1,000 sampled publications (seed 11), the title as the query
  against an engine built without titles: MRR@10, recall@1 and recall@10;
* ``recsys evaluate``'s measures (:func:`recsys.evaluate.evaluate`, one seeded query set):
  by-id and text same-label p@10 and known-item MRR@10 / recall@1 / recall@10, the default
  engine (at its lexical weight) beside the lexical engine;
* float16 against float32: rankings from the stored float16 sentence vectors against
  those from the float32 vectors of the cache (by id and one-sentence text), and what
  float16 publication vectors would change;
* memory of two processes serving the largest engine (shared vs private);
* the archive of the largest engine: size, ``recsys.archive.verify``, a recommendation.

Built engines and the vectors are kept under the cache folder (``~/.cache/recsys-bench`` or
``RECSYS_BENCH_CACHE``) with the timings measured when they were made, so a rerun does not
encode 320,000 sentences again; ``--rebuild`` measures builds again (the vectors stay).
Prints a markdown report; ``--write-docs`` writes it into docs/benchmarks.md (engine section).
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
    cache_dir,
    command_line,
    dataset_path,
    nested_sample,
    peak_rss_mb,
    read_publications,
    write_section,
)
from _engine_vectors import CachedEncoder, VectorCache, distinct_sentences  # noqa: E402

from recsys.config import Settings  # noqa: E402
from recsys.domain import Publication  # noqa: E402
from recsys_engine_annoy import AnnoyEngine  # noqa: E402
from recsys_engine_annoy.corpus import publication_sentences  # noqa: E402
from recsys_engine_annoy.encoders import build_threads, make_encoder, resolve_backend  # noqa: E402
from recsys_engine_annoy.model import resolve_model  # noqa: E402
from recsys_engine_annoy.settings import SETTINGS as ANNOY  # noqa: E402
from recsys_engine_annoy.settings import annoy_settings  # noqa: E402

SAMPLE_SENTENCES = 10_000
CHANGED_SHARE = 0.01
#: Changes whose downloaded share is measured, and the sizes they are measured at.
DELTA_SHARES = (0.01, 0.10)
DELTA_SIZES = (1_000,)
SKIPPABLE = ("rebuild", "delta", "equivalence", "latency", "recall", "quality", "known", "evaluate", "float16",
             "lexical", "memory", "archive")
#: Publications of the equivalence check (real encoding: three builds per backend).
EQUIVALENCE_SIZE = 1_000


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

    def engine_folder(self, size: int, backend: str, kind: str = "") -> Path:
        return self.root / f"{kind}{backend}-{size}"

    def vectors(self, backend: str) -> VectorCache:
        return VectorCache(self.root / "vectors" / backend, distinct_sentences(self.publications))


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
    return resolve_backend(Settings().with_plugin(ANNOY, embedding_backend=name)) if name == "auto" else name


# -- the encode-rate sample and the vector cache -----------------------------------------


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
            vectors = encoder.encode(chunk, batch_size=annoy_settings(bench.settings).batch_size)
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


def ensure_vectors(bench: Bench, backend: str) -> dict[str, float]:
    """Fill the backend's vector cache (every distinct sentence of the corpus); its timing."""
    cache = bench.vectors(backend)
    if not cache.complete():
        log(f"encoding the corpus's {len(cache.texts)} distinct sentences with {backend} into {cache.folder}")
        encoder = make_encoder(resolve_model(bench.settings), backend, bench.settings, threads=build_threads())
        try:
            cache.fill(encoder, log)
        finally:
            encoder.close()
    return cache.timing()


# -- builds, each in a child process ---------------------------------------------------


def child_build(spec: dict[str, Any]) -> None:
    """Run one build (in a child process) and print its measurements as JSON."""
    from recsys_engine_annoy import engine as engine_module

    everything = read_publications(Path(spec["data"]))
    publications = nested_sample(everything, spec["size"])
    if spec.get("change"):
        publications = changed_corpus(publications, spec["change"])
    if spec.get("no_titles"):
        publications = [dataclasses.replace(p, title="") for p in publications]
    settings = Settings(data_dir=Path(spec["data_dir"]), cache_dir=Path(spec["cache_dir"])).with_plugin(
        ANNOY, embedding_backend=spec["backend"])
    encoders: list[CachedEncoder] = []
    if spec.get("vectors") and not spec.get("real"):
        cache = VectorCache(Path(spec["vectors"]), distinct_sentences(everything))
        real = engine_module.make_encoder

        def cached(model: Any, backend: str, settings: Settings, *, threads: int) -> CachedEncoder:
            made = CachedEncoder(cache, lambda: real(model, backend, settings, threads=threads), backend)
            encoders.append(made)
            return made

        engine_module.make_encoder = cached  # type: ignore[assignment]
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
        "cached": sum(e.cached for e in encoders), "encoded": sum(e.encoded for e in encoders),
        "encode_seconds": sum(e.encode_seconds for e in encoders),
        "peak_rss_mb": peak_rss_mb(), "disk_mb": folder_mb(out), "index_mb": folder_mb(out, ".ann"),
        "files": files_by_kind(out), "segments": engine.segment_report(),
        "built_at": datetime.now(UTC).isoformat(timespec="seconds"), "backend": engine.info.backend,
    }))


def changed_corpus(publications: list[Publication], share: float) -> list[Publication]:
    """The corpus with ``share`` of its publications (seed 7) rewritten: every sentence but the title new."""
    rng = np.random.default_rng(7)
    picked = set(rng.choice(len(publications), max(1, round(share * len(publications))), replace=False).tolist())
    return [
        dataclasses.replace(p, abstract=" ".join(f"Revised: {s}" for s in publication_sentences(p)[1:]) or "Revised.")
        if i in picked else p
        for i, p in enumerate(publications)
    ]


def folder_mb(folder: Path, suffix: str = "") -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and p.name.endswith(suffix)) / 1e6


def files_by_kind(folder: Path) -> dict[str, int]:
    """Bytes per kind of file (its name; tombstones and JSON state together)."""
    kinds: dict[str, int] = {}
    for path in folder.rglob("*"):
        if path.is_file():
            kind = "tombstones" if path.parent.name == "tombstones" else path.name
            kinds[kind] = kinds.get(kind, 0) + path.stat().st_size
    return kinds


def file_hashes(folder: Path) -> dict[str, tuple[str, int]]:
    out = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            digest = hashlib.sha256()
            with path.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
            out[path.relative_to(folder).as_posix()] = (digest.hexdigest(), path.stat().st_size)
    return out


def run_build(bench: Bench, size: int, backend: str, out: Path, *, previous: Path | None = None,
              change: float = 0.0, no_titles: bool = False, real: bool = False) -> dict[str, Any]:
    spec = {"data": str(bench.data_path), "size": size, "backend": backend, "out": str(out),
            "previous": str(previous) if previous else None, "change": change, "no_titles": no_titles,
            "real": real,
            "vectors": str(bench.vectors(backend).folder),
            "data_dir": str(bench.settings.data_dir), "cache_dir": str(bench.settings.effective_cache_dir)}
    what = (f" ({100 * change:.0f}% changed" + (", from the previous engine)" if previous else ")")
            if change else "") + (" without titles" if no_titles else "") + (", encoding everything" if real else "")
    log(f"building {size} publications with {backend}{what}")
    done = subprocess.run([sys.executable, __file__, "--child-build", json.dumps(spec)], capture_output=True,
                          text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"the build of {size} publications with {backend} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    log(f"  {result['seconds']:.1f} s, {result['cached']} vectors from the cache, "
        f"{result['stats']['encoded']:.0f} sentences encoded")
    return result


def ensure_build(bench: Bench, size: int, backend: str, *, no_titles: bool = False) -> dict[str, Any]:
    folder = bench.engine_folder(size, backend, "notitle-" if no_titles else "")
    record = folder.with_suffix(".json")
    if not bench.args.rebuild and record.is_file() and (folder / "engine.json").is_file():
        result: dict[str, Any] = json.loads(record.read_text())
        return result
    shutil.rmtree(folder, ignore_errors=True)
    result = run_build(bench, size, backend, folder, no_titles=no_titles)
    record.write_text(json.dumps(result, indent=2))
    return result


# -- measurements that build -------------------------------------------------------------


def measure_change(bench: Bench, size: int, backend: str, share: float) -> dict[str, Any]:
    """An incremental build after changing ``share`` of the publications, from the cached
    engine: its time, and the share of its bytes that are new (files whose sha256 the
    previous version lacks: what a machine holding it downloads)."""
    previous = bench.engine_folder(size, backend)
    with tempfile.TemporaryDirectory(dir=bench.root) as tmp:
        result = run_build(bench, size, backend, Path(tmp) / "engine", previous=previous, change=share)
        old = {digest for digest, _ in file_hashes(previous).values()}
        new = file_hashes(Path(tmp) / "engine")
    total = sum(size_ for _, size_ in new.values())
    fresh = sum(size_ for digest, size_ in new.values() if digest not in old)
    result.update(share=share, total_bytes=total, new_bytes=fresh, new_files=sorted(
        name for name, (digest, _) in new.items() if digest not in old))
    return result


def measure_equivalence(bench: Bench, size: int, backend: str) -> dict[str, Any]:
    """Does an incremental build answer like a build from scratch? With real encoding (no
    vector cache): a build of ``size`` publications, then the corpus with 1% changed built
    both incrementally from it and from scratch; every by-id query and 200 one-sentence texts
    asked of both."""
    from _engine_measure import compare_engines

    with tempfile.TemporaryDirectory(dir=bench.root) as tmp:
        first = run_build(bench, size, backend, Path(tmp) / "first", real=True)
        incremental = run_build(bench, size, backend, Path(tmp) / "incremental", previous=Path(tmp) / "first",
                                change=CHANGED_SHARE, real=True)
        run_build(bench, size, backend, Path(tmp) / "scratch", change=CHANGED_SHARE, real=True)
        settings = bench.settings.with_plugin(ANNOY, embedding_backend=backend)
        corpus = changed_corpus(bench.corpus(size), CHANGED_SHARE)
        with AnnoyEngine.load(Path(tmp) / "incremental", settings) as one, \
                AnnoyEngine.load(Path(tmp) / "scratch", settings) as other:
            result = compare_engines(one, other, corpus)  # type: ignore[arg-type]
    result.update(full_build_s=first["seconds"], encoded=first["stats"]["encoded"],
                  incremental_s=incremental["seconds"])
    return result


# -- the report ----------------------------------------------------------------------------


def measure_size(bench: Bench, report: Any, size: int, backend: str, skip: set[str],
                 changes: dict[tuple[int, float], dict[str, Any]], *, largest: bool) -> None:
    """Every measurement of one size and backend."""
    from _engine_measure import (
        measure_evaluate,
        measure_float16,
        measure_known_item,
        measure_latency,
        measure_quality,
        measure_recall,
    )

    default = concrete_backend("auto")
    corpus = bench.corpus(size)
    build = ensure_build(bench, size, backend)
    report.add_build(size, backend, build)
    if "rebuild" not in skip and backend == default:
        changes[size, CHANGED_SHARE] = measure_change(bench, size, backend, CHANGED_SHARE)
        report.add_rebuild(size, backend, changes[size, CHANGED_SHARE], build)
    settings = bench.settings.with_plugin(ANNOY, embedding_backend=backend)
    engine = AnnoyEngine.load(bench.engine_folder(size, backend), settings)
    if "latency" not in skip:
        report.add_latency(size, backend, measure_latency(engine, corpus))
    if "recall" not in skip and backend == default:
        report.add_recall(size, measure_recall(engine, sweep=largest))
    if "quality" not in skip:
        log(f"quality of {size} publications ({backend})")
        lexical = "lexical" not in skip and backend == default
        report.add_quality(size, backend, measure_quality(engine, corpus, bench.settings, lexical=lexical))
    if "float16" not in skip:
        report.add_float16(size, backend, measure_float16(engine, corpus, bench.vectors(backend)))
    engine.close()
    if "known" not in skip or "evaluate" not in skip:
        ensure_build(bench, size, backend, no_titles=True)
        blind = AnnoyEngine.load(bench.engine_folder(size, backend, "notitle-"), settings)
        if "known" not in skip:
            log(f"known-item search in {size} publications ({backend})")
            report.add_known(size, backend, measure_known_item(blind, corpus))
        if "evaluate" not in skip:
            log(f"recsys evaluate's measures on {size} publications ({backend})")
            engine = AnnoyEngine.load(bench.engine_folder(size, backend), settings)
            lexical = "lexical" not in skip and backend == default
            report.add_evaluate(size, backend, measure_evaluate(engine, blind, corpus, bench.settings, lexical=lexical))
            engine.close()
        blind.close()


def measure_changes(bench: Bench, report: Any, sizes: list[int], backends: list[str], skip: set[str],
                    changes: dict[tuple[int, float], dict[str, Any]]) -> None:
    """What machines download after 1% and 10% changes, and incremental against scratch builds."""
    default = concrete_backend("auto")
    if "delta" not in skip:
        for size in sorted({*DELTA_SIZES, sizes[-1]}):
            ensure_build(bench, size, default)
            for share in DELTA_SHARES:
                if (size, share) not in changes:
                    changes[size, share] = measure_change(bench, size, default, share)
                report.add_delta(size, default, changes[size, share])
    if "equivalence" not in skip:
        for backend in backends:
            report.equivalence[backend] = measure_equivalence(bench, EQUIVALENCE_SIZE, backend)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="2000,10000,all", help="publications per run, 'all' = whole corpus")
    parser.add_argument("--backends", default="onnx,onnx-int8", help="embedding backends to build with")
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
    from _engine_measure import measure_archive, measure_memory  # measurements on a built engine
    from _engine_report import Report  # the markdown tables

    skip = {s for s in args.skip.split(",") if s}
    if skip - set(SKIPPABLE):
        parser.error(f"unknown part(s) to skip: {', '.join(sorted(skip - set(SKIPPABLE)))}")
    bench = open_bench(args)
    sizes = parse_sizes(args.sizes, len(bench.publications))
    backends = list(dict.fromkeys(concrete_backend(b) for b in args.backends.split(",")))
    default = concrete_backend("auto")
    report = Report(command_line(), bench.publications, default)
    sample_file = bench.root / "sample.json"
    if args.resample or not sample_file.is_file():
        sample_file.write_text(json.dumps(measure_sample(bench, backends), indent=2))
    report.sample = json.loads(sample_file.read_text())
    for backend in dict.fromkeys([*backends, default]):
        report.vectors[backend] = ensure_vectors(bench, backend)
    changes: dict[tuple[int, float], dict[str, Any]] = {}
    for size in sizes:
        for backend in backends:
            measure_size(bench, report, size, backend, skip, changes, largest=size == sizes[-1])
    measure_changes(bench, report, sizes, backends, skip, changes)
    largest = bench.engine_folder(sizes[-1], default)
    if "memory" not in skip:
        report.memory = measure_memory(largest, bench.corpus(sizes[-1]), bench.settings)
    if "archive" not in skip:
        log("building and verifying the archive of the largest engine")
        report.archive = measure_archive(bench.corpus(sizes[-1]), largest, bench.settings)
    text = report.render(sizes)
    print(text)
    if args.write_docs:
        write_section("engine", text)
        log("wrote docs/benchmarks.md (engine section)")


if __name__ == "__main__":
    main()
