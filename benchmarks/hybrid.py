"""The hybrid score of the default engine: quality for each lexical weight, on both kinds of query.

    nice -n 10 python benchmarks/hybrid.py [--size 3000] [--weights 0,0.1,...,1] [--seed 42]
                                           [--data PATH] [--cache DIR] [--write-docs]

On a seeded sample of the real corpus (``--size`` publications; ``all``: the whole corpus)
it builds the annoy engine twice (over the corpus, and with every title withheld, the
known-item setup of :mod:`recsys.evaluate`) and the lexical engine twice, then measures,
with :func:`recsys.evaluate.evaluate` on one seeded query set, for each ``lexical_weight``:
same-label p@10 of by-id and of text queries, and known-item MRR@10, recall@1 and @10.
The lexical engine is measured beside it. It also times a one-sentence text query at each
weight (encoding excluded: the sentence vectors come from a memo, so this is the ranking's
cost, which the weight changes), the whole query at the default weight with the sentence
encoded for real, the lexical half alone over the whole corpus, and the saved engine's bytes
(all files, and the lexical part's).

Sentence vectors are kept in ``<cache>/hybrid/<size>-<seed>.npz`` (the sample's distinct
sentences, encoded once with onnx), so a rerun only ranks.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    cache_dir,
    command_line,
    dataset_path,
    nested_sample,
    percentiles,
    read_publications,
    write_section,  # noqa: E402
)

from recsys.config import Settings  # noqa: E402
from recsys.domain import Publication, Query, Recommendation  # noqa: E402
from recsys.evaluate import draw_queries, evaluate, withhold_titles  # noqa: E402
from recsys_engine_annoy import AnnoyEngine  # noqa: E402
from recsys_engine_annoy import engine as engine_module  # noqa: E402
from recsys_engine_annoy.settings import DEFAULT_LEXICAL_WEIGHT  # noqa: E402
from recsys_engine_annoy.settings import SETTINGS as ANNOY  # noqa: E402
from recsys_engine_lexical import LexicalEngine  # noqa: E402

WEIGHTS = "0,0.1,0.2,0.3,0.4,0.5,0.6,0.8,1"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class MemoEncoder:
    """The engine's encoder with a memo of every sentence it encoded (saved between runs)."""

    backend = "onnx"

    def __init__(self, inner: Any, path: Path) -> None:
        self.inner, self.path, self.dimension = inner, path, inner.dimension
        self.memo: dict[str, np.ndarray] = {}
        if path.is_file():
            with np.load(path, allow_pickle=False) as saved:
                self.memo = dict(zip(json.loads(str(saved["texts"])), saved["vectors"], strict=True))

    def encode(self, sentences: Sequence[str], *, batch_size: int = 32, progress: Any = None) -> np.ndarray:
        missing = list(dict.fromkeys(s for s in sentences if s not in self.memo))
        if missing:
            log(f"encoding {len(missing)} sentences")
            for sentence, vector in zip(missing, self.inner.encode(missing, batch_size=batch_size), strict=True):
                self.memo[sentence] = vector
        if progress is not None:
            progress(len(sentences))
        return np.stack([self.memo[s] for s in sentences]) if sentences else np.zeros((0, self.dimension), np.float32)

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        texts = list(self.memo)
        np.savez(self.path, texts=np.array(json.dumps(texts)), vectors=np.stack([self.memo[t] for t in texts]))

    def close(self) -> None:
        return None


class Weighted:
    """An engine whose every query carries ``lexical_weight``."""

    def __init__(self, engine: AnnoyEngine, weight: float) -> None:
        self.engine, self.weight = engine, weight

    def recommend(self, query: Query) -> list[Recommendation]:
        return self.engine.recommend(dataclasses.replace(query, lexical_weight=self.weight))


def build(settings: Settings, publications: list[Publication]) -> AnnoyEngine:
    engine = AnnoyEngine(settings)
    engine.fit(publications)
    return engine


def engine_bytes(engine: AnnoyEngine) -> dict[str, float]:
    """MB of the saved engine's files: all of them, and the lexical part's (``lexical.*``)."""
    with tempfile.TemporaryDirectory() as folder:
        engine.save(Path(folder))
        files = [f for f in Path(folder).rglob("*") if f.is_file()]
        total = sum(f.stat().st_size for f in files)
        lexical = sum(f.stat().st_size for f in files if f.name.startswith("lexical."))
    return {"engine_mb": total / 1e6, "lexical_mb": lexical / 1e6}


def latency(engine: Any, sentences: Sequence[str], forget: MemoEncoder | None = None) -> list[float]:
    """p50/p99 ms of one-sentence queries; with ``forget``, each sentence is dropped from
    that memo first, so the time includes encoding it for real (the whole query)."""
    for sentence in sentences[:20]:
        engine.recommend(Query(text=sentence, k=10))
    times = []
    for sentence in sentences:
        if forget is not None:
            forget.memo.pop(sentence, None)
        started = time.perf_counter()
        engine.recommend(Query(text=sentence, k=10))
        times.append(1000 * (time.perf_counter() - started))
    return percentiles(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="3000", help="publications of the sample ('all': the whole corpus)")
    parser.add_argument("--weights", default=WEIGHTS, help="lexical weights to measure")
    parser.add_argument("--seed", type=int, default=42, help="seed of the query set")
    parser.add_argument("--data", help="the publications JSONL(.gz) (default: ../shared/data/publications/...)")
    parser.add_argument("--cache", help="cache folder (default: ~/.cache/recsys-bench or RECSYS_BENCH_CACHE)")
    parser.add_argument("--write-docs", action="store_true", help="write the report into docs/benchmarks.md")
    args = parser.parse_args()
    data = dataset_path(args.data)
    everything = read_publications(data)
    size = len(everything) if args.size == "all" else min(len(everything), int(args.size))
    publications = nested_sample(everything, size)
    weights = [float(w) for w in args.weights.split(",")]
    base = cache_dir(args.cache)
    data_hash = hashlib.sha256(data.read_bytes()).hexdigest()[:12]
    settings = Settings(data_dir=base / "data", cache_dir=base / "models").with_plugin(ANNOY, embedding_backend="onnx")
    real_make = engine_module.make_encoder
    memo: MemoEncoder | None = None

    def memo_encoder(*given: Any, **_: Any) -> MemoEncoder:
        nonlocal memo
        if memo is None:
            model, backend, process_settings = given[:3]
            memo = MemoEncoder(real_make(model, backend, process_settings, threads=2),
                               base / "hybrid" / f"{data_hash}-{size}.npz")
        return memo

    engine_module.make_encoder = memo_encoder  # type: ignore[assignment]
    engine_module.get_encoder = memo_encoder  # type: ignore[assignment]
    log(f"{size} publications; building the annoy and lexical engines (with and without titles)")
    annoy, annoy_untitled = build(settings, publications), build(settings, withhold_titles(publications))
    lexical, lexical_untitled = LexicalEngine(), LexicalEngine()
    lexical.fit(publications)
    lexical_untitled.fit(withhold_titles(publications))
    queries = draw_queries(publications, seed=args.seed)
    # the query sentences into the memo before anything is timed
    annoy.encoder().encode([t for t, _, _ in queries.text] + [t for t, _ in queries.known])
    assert memo is not None
    memo.save()
    rows: list[dict[str, Any]] = []
    sentences = [t for t, _, _ in queries.text]
    for weight in weights:
        log(f"lexical_weight {weight:g}")
        measured = evaluate(Weighted(annoy, weight), queries, titles_withheld=Weighted(annoy_untitled, weight))
        measured["ranking_ms"] = latency(Weighted(annoy, weight), sentences)
        rows.append({"engine": f"annoy, lexical_weight {weight:g}", "weight": weight, **measured})
    measured = evaluate(lexical, queries, titles_withheld=lexical_untitled)
    measured["ranking_ms"] = latency(lexical, sentences)
    rows.append({"engine": "lexical", "weight": None, **measured})
    # the whole one-sentence query at the default weight, encoding included
    whole = latency(Weighted(annoy, DEFAULT_LEXICAL_WEIGHT), sentences, forget=memo)
    full = lexical_at_scale(everything, sentences)
    sizes = engine_bytes(annoy)
    text = render(rows, size, queries.to_dict(), full, whole, sizes, every=size == len(everything))
    print(text)
    print(json.dumps({"rows": rows, "full_corpus_lexical_ms": full, "whole_query_ms": whole, **sizes}),
          file=sys.stderr)
    if args.write_docs:  # the whole corpus has a section of its own beside the sample's
        write_section("hybrid-full" if args.size == "all" else "hybrid", text)


def lexical_at_scale(everything: list[Publication], sentences: Sequence[str]) -> list[float]:
    """p50/p99 ms of the lexical half alone (vectorize + score every publication) over the whole corpus."""
    from recsys_engine_lexical.index import LexicalIndex
    from recsys_engine_lexical.segment import build_segment
    from recsys_engine_lexical.tokenizer import Tokenizer

    log(f"the lexical half over all {len(everything)} publications")
    tokenizer = Tokenizer()
    index = LexicalIndex(tokenizer, [build_segment(1, everything, tokenizer)])
    times = []
    for sentence in sentences:
        started = time.perf_counter()
        index.scores(index.vectorize([tokenizer(sentence)]))
        times.append(1000 * (time.perf_counter() - started))
    return percentiles(times)


def render(rows: list[dict[str, Any]], size: int, queries: dict[str, Any], full: list[float],
           whole: list[float], sizes: dict[str, float], every: bool = False) -> str:
    lines = [
        "### Hybrid retrieval: the lexical weight" + (" (the whole dataset)" if every else ""),
        "",
        f"`{command_line()}`: {size:,} publications ({'all of them' if every else 'a seeded sample'}), "
        f"queries {queries}.",
        "",
        "| engine | by-id p@10 | text p@10 | known-item MRR@10 | R@1 | R@10 | ranking ms p50 / p99 |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        known = row["known_item"] or {}
        p50, p99 = row["ranking_ms"]
        lines.append(f"| {row['engine']} | {row['by_id']['p@10']:.3f} | {row['text']['p@10']:.3f} | "
                     f"{known.get('mrr@10', 0):.3f} | {known.get('recall@1', 0):.3f} | "
                     f"{known.get('recall@10', 0):.3f} | {p50:.2f} / {p99:.2f} |")
    lines += [
        "",
        "*ranking ms*: one-sentence text queries in process, encoding excluded (vectors from a memo). "
        f"The lexical half alone over the whole corpus (vectorize + score every publication): p50 {full[0]:.2f} ms, "
        f"p99 {full[1]:.2f} ms. The whole one-sentence query at the default weight, the sentence encoded for real "
        f"(onnx, 2 threads): p50 {whole[0]:.2f} ms, p99 {whole[1]:.2f} ms. The saved engine: "
        f"{sizes['engine_mb']:.1f} MB, of which the lexical files (`lexical.*`) {sizes['lexical_mb']:.1f} MB.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
