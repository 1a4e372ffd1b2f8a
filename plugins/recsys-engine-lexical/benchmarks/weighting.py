"""Which term weighting ranks same-topic publications best? (the study behind the engine's choice)

Compares, on the real dataset, the same-label precision@10 of by-id rankings for
500 publications sampled with seed 42 (self excluded), for: TF-IDF with
sublinear tf (the engine's scoring), TF-IDF with raw tf, BM25 (k1=1.2, b=0.75)
with a binary query, and BM25 on both sides; each with and without plural
stemming. Publication vectors come from title + abstract with the engine's
tokenizer.

    python plugins/recsys-engine-lexical/benchmarks/weighting.py [--size 2000]

The dataset defaults to ``../shared/data/publications/publications.jsonl.gz``
beside the repository (or ``RECSYS_BENCH_DATA``); without it the script says so
and exits 0.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from recsys.domain import Publication
from recsys.sources import FileSource, load_publications
from recsys_engine_lexical.index import count_matrix, inverse_document_frequency, weigh
from recsys_engine_lexical.tokenizer import Tokenizer

REPO = Path(__file__).resolve().parents[3]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "publications" / "publications.jsonl.gz"
SEED = 42

#: name -> (publication matrix, query matrix) from raw counts
Scheme = Callable[[sp.csr_array], tuple[sp.csr_array, sp.csr_array]]


def _normalise(matrix: sp.csr_array) -> sp.csr_array:
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
    return sp.csr_array(sp.diags_array(1.0 / np.maximum(norms, 1e-12)) @ matrix)


def tfidf_sublinear(counts: sp.csr_array) -> tuple[sp.csr_array, sp.csr_array]:
    weighted = weigh(counts, inverse_document_frequency(counts))
    return weighted, weighted


def tfidf_raw(counts: sp.csr_array) -> tuple[sp.csr_array, sp.csr_array]:
    weighted = _normalise(sp.csr_array(counts.multiply(inverse_document_frequency(counts)[None, :])))
    return weighted, weighted


def _bm25(counts: sp.csr_array, k1: float = 1.2, b: float = 0.75) -> sp.csr_array:
    n = counts.shape[0]
    df = np.bincount(counts.indices, minlength=counts.shape[1])
    idf = np.log(1 + (n - df + 0.5) / (df + 0.5))
    length = np.asarray(counts.sum(axis=1)).ravel()
    coo = counts.tocoo()
    tf = coo.data.astype(np.float64)
    weights = idf[coo.col] * tf * (k1 + 1) / (tf + k1 * (1 - b + b * length[coo.row] / length.mean()))
    return sp.csr_array((weights, (coo.row, coo.col)), shape=counts.shape)


def bm25_binary_query(counts: sp.csr_array) -> tuple[sp.csr_array, sp.csr_array]:
    query = counts.copy()
    query.data[:] = 1.0
    return _bm25(counts), query


def bm25_both_sides(counts: sp.csr_array) -> tuple[sp.csr_array, sp.csr_array]:
    weighted = _bm25(counts)
    return weighted, weighted


SCHEMES: dict[str, Scheme] = {
    "tfidf sublinear (engine)": tfidf_sublinear,
    "tfidf raw tf": tfidf_raw,
    "bm25, binary query": bm25_binary_query,
    "bm25, both sides": bm25_both_sides,
}


def precision_at_10(publications: list[Publication], stemming: bool, scheme: Scheme) -> float:
    tokenizer = Tokenizer(stemming=stemming)
    memo = tokenizer.memo()
    tokens = [tokenizer(f"{p.title}. {p.abstract}", memo) for p in publications]
    counts = count_matrix(tokens, {t: i for i, t in enumerate(sorted({t for ts in tokens for t in ts}))})
    documents, queries = scheme(counts)
    labels = [p.label for p in publications]
    shares = []
    for row in random.Random(SEED).sample(range(len(publications)), min(500, len(publications))):
        scores = (documents @ queries[[row]].T).toarray().ravel()
        scores[row] = -np.inf
        top = np.argpartition(-scores, 10)[:10]
        shares.append(sum(labels[i] == labels[row] for i in top) / 10)
    return statistics.fmean(shares)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("RECSYS_BENCH_DATA", DEFAULT_DATA)))
    parser.add_argument("--size", type=int, default=0, help="sample this many publications (seed 42); 0: all")
    args = parser.parse_args()
    if not args.data.exists():
        print(f"dataset {args.data} not found: set RECSYS_BENCH_DATA or pass --data; nothing measured")
        return 0
    publications = load_publications(FileSource(args.data))
    if 0 < args.size < len(publications):
        publications = random.Random(SEED).sample(publications, args.size)
    print(f"{len(publications)} publications; same-label precision@10 by id, 500 queries (seed {SEED})")
    print("weighting | plural stemming off | on")
    for name, scheme in SCHEMES.items():
        off, on = (precision_at_10(publications, stemming, scheme) for stemming in (False, True))
        print(f"{name} | {off:.4f} | {on:.4f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
