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

    def __init__(self, command: str, publications: list[Publication], default: str) -> None:
        self.command = command
        self.total = len(publications)
        self.default = default
        self.sample: dict[str, Any] = {}
        self.vectors: dict[str, dict[str, float]] = {}
        self.known: list[tuple[int, str, dict[str, float]]] = []
        self.evaluated: list[tuple[int, str, list[dict[str, Any]]]] = []
        self.float16: list[tuple[int, str, dict[str, Any]]] = []
        self.deltas: list[tuple[int, str, dict[str, Any]]] = []
        self.equivalence: dict[str, dict[str, Any]] = {}
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

    def add_known(self, size: int, backend: str, result: dict[str, float]) -> None:
        self.known.append((size, backend, result))

    def add_evaluate(self, size: int, backend: str, rows: list[dict[str, Any]]) -> None:
        self.evaluated.append((size, backend, rows))

    def add_float16(self, size: int, backend: str, result: dict[str, Any]) -> None:
        self.float16.append((size, backend, result))

    def add_delta(self, size: int, backend: str, result: dict[str, Any]) -> None:
        self.deltas.append((size, backend, result))

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
            ("Encoding the whole corpus (the vector cache)", self._vectors),
            ("Build", self._builds),
            ("Engine files by kind", self._files),
            ("Rebuild after changing 1% of the publications", self._rebuilds),
            ("What a machine downloads after a change", self._deltas),
            ("An incremental build against one from scratch, real encoding", self._equivalence),
            ("Query latency, in-process (one encoding thread, k=10)", self._latency),
            ("Recall@10 of the Annoy search against exact search over the same vectors", self._recall),
            ("Same-label precision@10 of by-id recommendations (500 publications, seed 42)", self._quality),
            ("Known-item search: a title as the query, titles left out of the index",
             self._known),
            ("`recsys evaluate`: both kinds of query, the default engine beside the lexical one", self._evaluated),
            ("float16 sentence vectors against float32", self._float16),
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

    def _vectors(self) -> str:
        rows = []
        torch_rate = self._torch_rate()
        for backend, timing in self.vectors.items():
            rows.append([f"`{backend}`", f"{timing['sentences']:,.0f}", _f(timing["seconds"], 0),
                         _f(timing["rate"], 0), _f(timing["rate"] / torch_rate, 2) + "x"])
        return _table(["backend", "distinct sentences encoded", "seconds", "sentences/s", "vs raw torch (sample)"],
                      rows) + (
            "\n\nEvery distinct sentence of the corpus, encoded once per backend (batches of 32, every core) into "
            "the benchmark's float32 vector cache, in chunks of 20,000 timed one by one (the machine is shared: "
            "other work slowed some chunks). Builds take their vectors from this cache; *encoding s* in the build "
            "table is the build's distinct sentences at this rate.")

    def _encode_rate(self, backend: str) -> float:
        return float(self.vectors.get(backend, {}).get("rate", float("nan")))

    def _builds(self) -> str:
        rows = []
        for size, backend, result in self.builds:
            stats = result["stats"]
            encoding = result.get("cached", 0) / self._encode_rate(backend) + result.get("encode_seconds", 0.0)
            rows.append([
                f"{size:,}", f"`{backend}`", f"{stats['sentences']:,.0f}", _f(result["seconds"]), _f(encoding),
                _f(result["seconds"] + encoding), _f(result["index_mb"], 0), _f(result["disk_mb"], 0),
                _f(result["peak_rss_mb"], 0), result["built_at"][:16].replace("T", " "),
            ])
        return _table(["publications", "backend", "sentences", "build s without encoding", "encoding s",
                       "full build s", "Annoy files MB", "engine folder MB", "peak memory MB", "measured (UTC)"],
                      rows) + (
            "\n\n*build s without encoding*: splitting, taking the vectors from the cache, publication means, "
            "segments and saving, measured. *encoding s*: the build's distinct sentences at the whole-corpus encode "
            "rate of its backend (above). *full build s*: their sum, what a build that encodes takes.")

    def _files(self) -> str:
        largest = max((size for size, _, _ in self.builds), default=0)
        picked = [(b, r) for size, b, r in self.builds if size == largest]
        if not picked:
            return ""
        backend, result = picked[0]
        files: dict[str, int] = result.get("files", {})
        total = sum(files.values()) or 1
        rows = [[f"`{name}`", _f(size / 1e6, 1), f"{100 * size / total:.1f}%"]
                for name, size in sorted(files.items(), key=lambda item: -item[1])]
        rows.append(["**total**", f"**{_f(total / 1e6, 1)}**", "100%"])
        return _table(["file", "MB", "share"], rows) + (
            f"\n\nThe `{backend}` engine over {largest:,} publications (every segment's files summed by name). "
            "The first-wave engine over the full corpus was 1,154 MB: 788 MB of Annoy files that were not searched "
            "at this size, and a sentence-owner array now derived from the starts.")

    def _rebuilds(self) -> str:
        rows = []
        for size, backend, result, full in self.rebuilds:
            stats = result["stats"]
            full_s = full["seconds"] + full.get("cached", 0) / self._encode_rate(backend) + full.get(
                "encode_seconds", 0.0)
            rows.append([
                f"{size:,}", f"`{backend}`", f"{stats['encoded']:,.0f} of {stats['sentences']:,.0f}",
                _f(result["seconds"]), _f(full_s), f"{100 * result['seconds'] / full_s:.1f}%",
                f"{100 * result['new_bytes'] / result['total_bytes']:.1f}%",
            ])
        return _table(["publications", "backend", "sentences encoded (new segment)", "rebuild s",
                       "full build s", "share", "bytes new"], rows) + (
            "\n\nThe rebuild is an incremental build from the cached engine: the unchanged segment is kept (hard "
            "links), the changed publications go into a new segment and tombstones; their rewritten sentences are "
            "encoded for real. *bytes new*: the share of the new engine's bytes in files whose sha256 the previous "
            "engine lacks.")

    def _deltas(self) -> str:
        rows = []
        for size, backend, r in self.deltas:
            segments = sorted({name.split("/")[1] for name in r["new_files"] if name.startswith("segments/")})
            others = sorted({name.split("/")[0] for name in r["new_files"] if not name.startswith("segments/")})
            names = [*others, *(f"segment {s} (all files)" for s in segments)]
            rows.append([f"{size:,}", f"`{backend}`", f"{100 * r['share']:.0f}%", f"{r['total_bytes'] / 1e6:,.1f}",
                         f"{r['new_bytes'] / 1e6:,.2f}", f"{100 * r['new_bytes'] / r['total_bytes']:.1f}%",
                         str(int(r["segments"]["count"])), ", ".join(names)])
        return _table(["publications", "backend", "changed", "engine MB", "new MB", "share new", "segments",
                       "new files"], rows) + (
            "\n\nAn incremental build after rewriting that share of the publications (seed 7), from the engine "
            "built from scratch; *new MB*: the bytes of files whose sha256 the previous version lacks, which is what "
            "a worker machine holding it downloads (the rest it links from its blob store). The first-wave engine "
            "rewrote 96% of its bytes after a 1% change of 1,000 papers.")

    def _equivalence(self) -> str:
        rows = [[f"`{backend}`", f"{r['full_build_s']:.1f}", f"{r['incremental_s']:.1f}", f"{r['queries']:,}",
                 f"{r['same_list']:.3f}", f"{r['overlap10']:.4f}", f"{r['max_score_diff']:.1e}"]
                for backend, r in self.equivalence.items()]
        return _table(["backend", "full build s (1,000 publications, encoding)", "incremental build s (1% changed)",
                       "queries", "same top 10, same order", "top-10 overlap", "largest score difference (same "
                       "lists)"], rows) + (
            "\n\nThree builds per backend with every vector encoded by the build itself (no cache): 1,000 "
            "publications; then the corpus with 1% of them rewritten (seed 7), built incrementally from the first "
            "and from scratch. Both answer every by-id query and 200 one-sentence texts.")

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
            "queries without the sentence index's extra candidates (the same where no segment has one). *text "
            "recall@10 vs exact*: the share of the exact top 10 (every segment scanned exactly) that the query "
            "returns. The machine is shared: its load average at the end of each row is given, since contention "
            "inflates these figures.")

    def _recall(self) -> str:
        rows = [[f"{size:,}", row["index"], f"{row['items']:,}", str(row["trees"]), str(row["search_k"]),
                 f"{row['recall']:.3f}", f"{row['ms']:.2f}"] for size, row in self.recall]
        return _table(["publications", "index", "vectors", "trees", "search_k", "recall@10", "ms/search"], rows) + (
            "\n\n1,000 stored vectors per row used as queries (their own item left out); settings derived from the "
            "size (`RECSYS_ANNOY_TREES=0`, `RECSYS_ANNOY_SEARCH_K=0`). Rows naming a segment are the Annoy files "
            "of a segment that has them (50,000 publications or more); *prefix* / *all*: an index built here over "
            "the first N sentence vectors / all publication vectors of the largest segment, as a segment of that "
            "size would have it.")

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
            "\n\n*exact search*: the same engine with every segment scanned exactly (numpy over every vector). "
            "*mean-vector reference*: "
            "exact cosine between per-paper mean sentence vectors in plain numpy, same vectors. *sum of best "
            "sentence matches*: each paper scored by the sum over query sentences of its best-matching sentence, "
            "exact. Goals: annoy >= 0.45 on the full corpus, and never more than 0.01 below the reference.")

    def _known(self) -> str:
        rows = [[f"{size:,}", f"`{backend}`", f"{r['queries']:,}", f"{r['mrr10']:.3f}",
                 f"{r['recall1']:.3f} ± {r.get('recall1_se', float('nan')):.3f}", f"{r['recall10']:.3f}",
                 f"{r['p50_ms']:.1f} / {r['p99_ms']:.1f}"] for size, backend, r in self.known]
        return _table(["publications", "backend", "queries", "MRR@10", "recall@1 ± s.e.", "recall@10",
                       "p50 / p99 ms"], rows) + (
            "\n\nAn engine built over the same publications with their titles left out; the title of each "
            "sampled publication (seed 11) is the text query (k=10), and the rank of that publication is scored. "
            "The backends answer the same sampled titles.")

    def _evaluated(self) -> str:
        rows = []
        for size, backend, measured in self.evaluated:
            for row in measured:
                known = row.get("known_item") or {}
                figures = [row["by_id"]["p@10"], row["text"]["p@10"],
                           *(known.get(k, float("nan")) for k in ("mrr@10", "recall@1", "recall@10"))]
                rows.append([f"{size:,}", f"`{backend}`", row["engine"], *(f"{x:.3f}" for x in figures)])
        return _table(["publications", "backend", "engine", "by-id p@10", "text p@10", "known-item MRR@10", "R@1",
                       "R@10"], rows) + (
            "\n\n`recsys.evaluate.evaluate` (what `recsys evaluate` prints) on one query set drawn with seed 42: "
            "same-label precision@10 of by-id queries and of one-sentence text queries (a sentence of an abstract), "
            "and known-item search (titles as queries, against engines built with titles left out). The default "
            "engine answers at its configured lexical weight.")

    def _float16(self) -> str:
        rows = []
        for size, backend, r in self.float16:
            rows.append([
                f"{size:,}", f"`{backend}`", f"{r['max_sentence_cos_loss']:.1e}", f"{r['max_mean_cos_loss']:.1e}",
                f"{r['by_id']['overlap10']:.4f} / {r['by_id']['same_list']:.3f}",
                f"{r['by_text']['overlap10']:.4f} / {r['by_text']['same_list']:.3f}",
                f"{r['p10_float32']:.4f} / {r['p10_float16']:.4f}",
                f"{r['by_id_half_means']['overlap10']:.4f} / {r['by_text_half_means']['overlap10']:.4f}",
            ])
        return _table(["publications", "backend", "sentence vector: largest cosine lost", "publication mean: largest "
                       "cosine lost", "by id: top-10 overlap / same list", "one-sentence text: top-10 overlap / "
                       "same list", "p@10 float32 / float16", "float16 publication means too: top-10 overlap by id / "
                       "by text"], rows) + (
            "\n\nExact search over publication means computed from the float32 sentence vectors (the vector "
            "cache) against the engine's, computed from its stored float16 sentence vectors: 500 by-id queries "
            "(seed 42) and 300 one-sentence texts (float32 query vectors). *same list*: the same 10 in the same "
            "order. The last column: what storing the publication means in float16 as well would change against "
            "the engine as it is (they stay float32: a float16 scan would also need a float32 copy per query).")

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
