"""The markdown report of ``benchmarks/engine.py`` (the ``engine`` section of docs/benchmarks.md)."""

from __future__ import annotations

import platform
from collections import defaultdict
from datetime import datetime
from typing import Any

from recsys.domain import Publication

__all__ = ["Report"]


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _f(value: float, digits: int = 1) -> str:
    return "n/a" if value != value else f"{value:,.{digits}f}"


class Report:
    """Collects every measurement of one run and renders it as markdown."""

    def __init__(self, command: str, publications: list[Publication]) -> None:
        self.command = command
        self.total = len(publications)
        self.sample: dict[str, Any] = {}
        self.builds: list[tuple[int, str, dict[str, Any]]] = []
        self.rebuilds: list[tuple[int, str, dict[str, Any], dict[str, Any]]] = []
        self.latency: list[tuple[int, str, dict[str, list[float]]]] = []
        self.recall: list[tuple[int, dict[str, Any]]] = []
        self.quality: list[tuple[int, str, dict[str, float]]] = []
        self.memory: list[dict[str, Any]] = []
        self.archive: dict[str, Any] = {}

    def add_build(self, size: int, backend: str, result: dict[str, Any]) -> None:
        self.builds.append((size, backend, result))

    def add_rebuild(self, size: int, backend: str, result: dict[str, Any], full: dict[str, Any]) -> None:
        self.rebuilds.append((size, backend, result, full))

    def add_latency(self, size: int, backend: str, result: dict[str, list[float]]) -> None:
        self.latency.append((size, backend, result))

    def add_recall(self, size: int, rows: list[dict[str, Any]]) -> None:
        self.recall.extend((size, row) for row in rows)

    def add_quality(self, size: int, backend: str, result: dict[str, float]) -> None:
        self.quality.append((size, backend, result))

    # -- rendering -------------------------------------------------------------------

    def render(self, sizes: list[int]) -> str:
        parts = [
            f"Measured {datetime.now():%Y-%m-%d} on {platform.machine()} with {self.sample.get('threads', '?')} "
            f"thread(s) for encoding, by:\n\n    {self.command}\n\n"
            f"Corpus: seeded random samples (seed 42, nested) of the {self.total:,} publications of "
            "`../shared/data/publications`; `label` = arXiv primary category. Builds run in a child process each "
            "and are cached with the timings measured when they ran (see `--rebuild`).",
        ]
        for title, section in (
            ("Encoding: the fixed 10,000-sentence sample", self._sample),
            ("Build", self._builds),
            ("Rebuild after changing 1% of the publications", self._rebuilds),
            ("Query latency, in-process (one encoding thread, k=10)", self._latency),
            ("Recall@10 of the Annoy search against exact search over the same vectors", self._recall),
            ("Same-label precision@10 of by-id recommendations (500 publications, seed 42)", self._quality),
            ("Memory: two processes serving the largest engine", self._memory),
            ("Archive of the largest engine", self._archive),
        ):
            body = section()
            if body:
                parts.append(f"#### {title}\n\n{body}")
        return "\n\n".join(parts) + "\n"

    def _torch_rate(self) -> float:
        return float(self.sample.get("backends", {}).get("torch", {}).get("rate", float("nan")))

    def _sample(self) -> str:
        rows = []
        torch_rate = self._torch_rate()
        for backend, entry in self.sample.get("backends", {}).items():
            rows.append([
                f"`{backend}`", _f(entry["rate"], 0), _f(entry["rate"] / torch_rate, 2) + "x",
                "reference" if backend == "torch" else f"{entry['cos_mean']:.5f} / {entry['cos_min']:.5f}",
                "" if backend == "torch" else f"{100 * entry['share_identical']:.1f}%",
            ])
        when = self.sample.get("measured_at", "")[:16].replace("T", " ")
        load = " / ".join(f"{x:.1f}" for x in self.sample.get("load", []))
        return _table(["backend", "sentences/s", "vs torch", "cosine to torch (mean / least)", "cosine >= 0.9999"],
                      rows) + (
            f"\n\nMeasured {when} UTC (machine load {load} at the end), {self.sample.get('threads')} threads, "
            "batches of 32 sentences of similar length; the backends took turns on chunks of 64 sentences so that "
            "the other work on this shared machine slowed them alike. *torch* is plain "
            "`SentenceTransformer.encode`: the raw model encode rate.")

    def _builds(self) -> str:
        rows = []
        torch_rate = self._torch_rate()
        for size, backend, result in self.builds:
            sentences = result["stats"]["sentences"]
            rate = sentences / result["seconds"]
            rows.append([
                f"{size:,}", f"`{backend}`", f"{sentences:,.0f}", _f(result["seconds"]), _f(rate, 0),
                _f(rate / torch_rate, 2) + "x", _f(result["index_mb"], 0), _f(result["disk_mb"], 0),
                _f(result["peak_rss_mb"], 0), result["built_at"][:16].replace("T", " "),
            ])
        return _table(["publications", "backend", "sentences", "build s", "sentences/s", "vs raw torch",
                       "Annoy files MB", "engine folder MB", "peak memory MB", "measured (UTC)"], rows) + (
            "\n\nBuild time covers splitting, encoding, both Annoy indexes and saving. *vs raw torch*: the build's "
            "sentences/s over plain `SentenceTransformer.encode` (batch 32) on the 10,000-sentence sample.")

    def _rebuilds(self) -> str:
        rows = []
        for size, backend, result, full in self.rebuilds:
            stats = result["stats"]
            rows.append([
                f"{size:,}", f"`{backend}`", f"{stats['encoded']:,.0f} of {stats['sentences']:,.0f}",
                _f(result["seconds"]), _f(full["seconds"]), f"{100 * result['seconds'] / full['seconds']:.1f}%",
            ])
        return _table(["publications", "backend", "sentences encoded", "rebuild s", "full build s", "share"], rows)

    def _latency(self) -> str:
        rows = []
        for size, backend, r in self.latency:
            recall = r.get("recall", {})
            rows.append([
                f"{size:,}", f"`{backend}`", f"{r['text'][0]:.1f} / {r['text'][1]:.1f}", f"{r['encode'][0]:.1f}",
                f"{r['text_publications_only'][0]:.1f} / {r['text_publications_only'][1]:.1f}"
                if "text_publications_only" in r else "",
                f"{recall.get('text', float('nan')):.3f} / {recall.get('text_publications_only', float('nan')):.3f}",
                f"{r['id'][0]:.1f} / {r['id'][1]:.1f}", " / ".join(f"{x:.1f}" for x in r.get("load", [])),
            ])
        return _table(["publications", "backend", "one-sentence text: p50 / p99 ms", "of which encoding: p50 ms",
                       "text, publication index only: p50 / p99 ms", "text recall@10 vs exact: with / without "
                       "sentence candidates", "by id: p50 / p99 ms", "machine load (1/5/15 min)"], rows) + (
            "\n\n300 one-sentence texts (a sentence of a random publication) and 500 by-id queries, after 20 "
            "warm-up queries, with `engine.recommend` in this process. *publication index only*: the same text "
            "queries without the sentence index's extra candidates. *text recall@10 vs exact*: the share of the "
            "exact top 10 (both indexes searched exactly) that the query returns. The machine is shared: its "
            "load average at the end of each row is given, since contention inflates these figures.")

    def _recall(self) -> str:
        rows = [[f"{size:,}", row["index"], f"{row['items']:,}", str(row["trees"]), str(row["search_k"]),
                 f"{row['recall']:.3f}", f"{row['ms']:.2f}"] for size, row in self.recall]
        return _table(["publications", "index", "vectors", "trees", "search_k", "recall@10", "ms/search"], rows) + (
            "\n\n1,000 stored vectors per row used as queries (their own item left out); settings derived from the "
            "size (`RECSYS_ANNOY_TREES=0`, `RECSYS_ANNOY_SEARCH_K=0`). *prefix*: an index over the first N sentence "
            "vectors of the largest engine.")

    def _quality(self) -> str:
        rows = []
        by_size: dict[int, dict[str, float]] = defaultdict(dict)
        for size, backend, result in self.quality:
            by_size[size].setdefault("reference", result["reference"])
            rows.append([
                f"{size:,}", f"`{backend}`", f"{result['annoy']:.3f}", f"{result['exact']:.3f}",
                f"{result['reference']:.3f}", f"{result['annoy'] - result['reference']:+.3f}",
                f"{result['maxsim']:.3f}", _f(result.get("lexical", float("nan")), 3), f"{result['random']:.3f}",
            ])
        return _table(["publications", "backend", "annoy", "exact search", "mean-vector reference",
                       "annoy - reference", "sum of best sentence matches", "lexical", "random"], rows) + (
            "\n\n*exact search*: the same engine with both indexes searched exactly (numpy over every vector). "
            "*mean-vector reference*: "
            "exact cosine between per-paper mean sentence vectors in plain numpy, same vectors. *sum of best "
            "sentence matches*: each paper scored by the sum over query sentences of its best-matching sentence, "
            "exact. Goals: annoy >= 0.45 on the full corpus, and never more than 0.01 below the reference.")

    def _memory(self) -> str:
        if not self.memory:
            return ""
        rows = []
        for entry in self.memory:
            total, files = entry["total"], entry["files"]
            rows.append([str(entry["process"]), _f(total["rss"], 0), _f(total["pss"], 0), _f(total["private"], 0),
                         _f(files["rss"], 0), _f(files["pss"], 0), _f(files["shared"], 0), _f(files["private"], 0)])
        size = self.memory[0].get("file_mb", float("nan"))
        return _table(["process", "RSS MB", "PSS MB", "private MB", "engine files: RSS MB", "PSS MB", "shared MB",
                       "private MB"], rows) + (
            f"\n\nTwo processes loaded the same engine folder ({_f(size, 0)} MB of files) and answered the same "
            "300 by-id and 100 text queries; figures from `/proc/<pid>/smaps` (MB = MiB). The engine's files "
            "(Annoy indexes, vectors, sentences) are memory-mapped read-only: the pages each process touched are "
            "one copy in the page cache, counted as *shared* in both and split between them in PSS; a second "
            "process adds only its *private* memory (Python, the model and onnxruntime, the publication table).")

    def _archive(self) -> str:
        if not self.archive:
            return ""
        a = self.archive
        return (f"`recsys.build.build_archive` (reusing the cached engine's vectors) made a {a['size_mb']:,.0f} MB "
                f"archive of {a['files']} files in {a['build_s']:.0f} s; `recsys.archive.verify` passed in "
                f"{a['verify_s']:.1f} s; unpacked and loaded with `recsys.load.load_engine`, it served "
                f"{a['served']} recommendations. The archive stays in the benchmark's cache "
                "(`<cache>/engine/<data>-<model>/archive-<backend>-<size>.zip`) for `recsys verify ARCHIVE` and "
                "`recsys recommend --archive ARCHIVE`.")
