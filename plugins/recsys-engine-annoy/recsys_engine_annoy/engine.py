"""AnnoyEngine: SentenceTransformer sentence vectors, segments, mean-vector ranking.

Build (:meth:`AnnoyEngine.fit`): every publication's title, abstract and full text are
split into sentences; each distinct sentence is encoded once (or its vector taken from
the previous engine, :mod:`recsys_engine_annoy.vectors`); each publication's vector is
the normalised mean of its sentence vectors. Publications live in immutable segments
(:mod:`recsys_engine_annoy.segments`); an incremental build keeps the previous engine's
segments, tombstones what was removed or changed and writes the rest as a new segment
(:mod:`recsys_engine_annoy.delta`), and a tiered policy merges segments
(:mod:`recsys_engine_annoy.merge`). Small segments are scanned exactly; only large ones
get Annoy indexes (:mod:`recsys_engine_annoy.ann`).

Query (:meth:`AnnoyEngine.recommend`): a text is split and encoded with the backend the
engine was built with; a by-id query uses the publication's stored sentence vectors and
needs no model. Ranking and evidence: :mod:`recsys_engine_annoy.ranking`.

Compatibility: an engine remembers its model (name and a hash of its files) and its
embedding backend. Loading it where the model differs is refused (IncompatibleEngine);
so is loading it where ``RECSYS_ANNOY_EMBEDDING_BACKEND`` names another backend. With
``auto`` the process encodes queries with the engine's own backend. First-wave engine
folders (format 1, no segments) load as one segment.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from recsys.config import Settings
from recsys.domain import Example, Publication, Query, Recommendation
from recsys.engine import NULL_PROGRESS, Engine, EngineMetadata, Progress
from recsys.errors import EngineLoadError, IncompatibleEngine, RecsysError, SourceError, UnknownPublication
from recsys_engine_annoy import layout
from recsys_engine_annoy.corpus import fingerprint, split_corpus
from recsys_engine_annoy.delta import Base, apply_policy, next_number, open_base, plan_delta
from recsys_engine_annoy.encoders import (
    BACKENDS,
    Encoder,
    TorchEncoder,
    build_threads,
    get_encoder,
    make_encoder,
    resolve_backend,
)
from recsys_engine_annoy.examples import Encoded, combine, combine_fusion, examples_of, query_sentences, texts_of
from recsys_engine_annoy.lexical import LexicalSignal, has_files, write_part
from recsys_engine_annoy.merge import MergePolicy
from recsys_engine_annoy.model import ModelInfo, resolve_model
from recsys_engine_annoy.ranking import EngineData, Fusion, QueryVectors, mean_vector, rank
from recsys_engine_annoy.segments import IndexRule, Segment
from recsys_engine_annoy.settings import AnnoySettings, annoy_settings
from recsys_engine_annoy.storage import PublicationRecords, PublicationTable
from recsys_engine_annoy.vectors import PreviousVectors, publication_means, sentence_vectors

__all__ = ["QUERY_BATCH_SIZE", "AnnoyEngine"]

#: Sentences per encoder call when a batch of queries is encoded (``recommend_many``): the
#: sentences are sorted by length and encoded this many at a time. Measured with onnxruntime
#: on one CPU thread (50 one-sentence queries, docs/benchmarks.md, *batch*): 8 at a time took
#: 0.64 s, 50 at once 1.1 s (padding to the longest, attention quadratic in it), one at a
#: time 0.6 s.
QUERY_BATCH_SIZE = 8

logger = logging.getLogger(__name__)


class AnnoyEngine(Engine):
    """The default engine; see the module docstring and docs/engine-annoy.md."""

    name = "annoy"
    #: Incremental builds keep unchanged segments' files byte-identical (docs/engine-annoy.md).
    supports_delta: ClassVar[bool] = True
    #: When segments are merged or rewritten.
    merge_policy: ClassVar[MergePolicy] = MergePolicy()

    def __init__(self, settings: Settings | None = None) -> None:
        super().__init__(settings)
        #: This plugin's settings (RECSYS_ANNOY_*), read once.
        self.options: AnnoySettings = annoy_settings(self.settings)
        self._data: EngineData | None = None
        self._lexical: LexicalSignal | None = None
        self._info: layout.EngineInfo | None = None
        self._model: ModelInfo | None = None
        self._deleted: list[NDArray[np.int64]] = []
        self._base: Base | None = None
        #: What the last fit() did: sentences encoded and reused, segments, seconds per stage.
        self.build_stats: dict[str, float] = {}

    # -- building -----------------------------------------------------------------

    def fit(
        self,
        publications: Sequence[Publication],
        *,
        progress: Progress = NULL_PROGRESS,
        previous: Path | None = None,
    ) -> None:
        if not publications:
            raise SourceError("no publications to build the engine from: the source gave none")
        started = time.monotonic()
        _check_unique(publications)
        model = resolve_model(self.settings)
        backend = self._build_backend(model, previous)
        rule = IndexRule(trees=self.options.trees, search_k=self.options.search_k)
        prints = [fingerprint(p) for p in publications]
        encoder, owned = self._build_encoder(model, backend)
        base: Base | None = None
        try:
            dimension = encoder.dimension
            if previous is not None:
                base = open_base(previous, model_sha256=model.sha256, backend=backend, dimension=dimension, rule=rule)
            delta = plan_delta(publications, prints, base)
            batch = [publications[i] for i in delta.batch]
            table = split_corpus(batch, lambda done: progress("split", done, len(batch)))
            split_done = time.monotonic()
            old: PreviousVectors | None = None
            if base is not None and len(table):
                old = PreviousVectors.of_segments(base.segments)
            elif base is None and previous is not None:
                old = PreviousVectors.open(previous, model_sha256=model.sha256, backend=backend, dimension=dimension)

            def encode(texts: Sequence[str]) -> np.ndarray:
                count = len(texts)
                progress("encode", 0, count)
                return encoder.encode(texts, batch_size=self.options.batch_size,
                                      progress=lambda done: progress("encode", done, count))

            if isinstance(encoder, TorchEncoder):
                with encoder.threads_for_build():
                    built = sentence_vectors(table.texts, encode, dimension, old)
            else:
                built = sentence_vectors(table.texts, encode, dimension, old)
        except BaseException:
            if base is not None:
                base.close()
            raise
        finally:
            if owned:
                encoder.close()
        encode_done = time.monotonic()

        try:
            number = base.info.next_segment if base is not None else next_number(previous)
            segments: list[Segment] = list(base.segments) if base is not None else []
            deleted = list(delta.deleted)
            fresh: set[str] = set()
            progress("index", 0, 1)
            if batch:
                segment_id = layout.segment_name(number)
                number += 1
                segments.append(Segment.build(
                    segment_id, PublicationRecords.from_publications(batch),
                    np.frombuffer(b"".join(prints[i] for i in delta.batch), dtype=np.uint8).reshape(-1, 32),
                    table.texts, table.starts, built.vectors, publication_means(built.vectors, table.starts), rule,
                ))
                deleted.append(np.empty(0, dtype=np.int64))
                fresh.add(segment_id)
            progress("index", 1, 1)
            index_done = time.monotonic()
            outcome = apply_policy(segments, deleted, policy=self.merge_policy, rule=rule, next_number=number,
                                   fresh=fresh)
            merge_done = time.monotonic()
        except BaseException:
            if base is not None:
                base.close()
            raise

        self.close()
        self._base = base
        self._model = model
        self._install(outcome.segments, outcome.deleted)
        data = self.data
        last_build = {
            "incremental": base is not None, "written": outcome.written, "merged": outcome.merged,
            "dropped": outcome.dropped, "unchanged": delta.unchanged, "changed": delta.changed,
            "added": delta.added, "removed": delta.removed,
        }
        self._info = layout.EngineInfo(
            model=model.name, model_sha256=model.sha256, backend=backend, dimension=dimension,
            publications=data.publications.live, sentences=_live_sentences(outcome.segments, outcome.deleted),
            trees=rule.trees, search_k=rule.search_k, segments=_entries(outcome.segments, outcome.deleted),
            next_segment=outcome.next_number, merge_policy=self.merge_policy.to_dict(), last_build=last_build,
            versions=_versions(),
        )
        finished = time.monotonic()
        self.build_stats = {
            "sentences": float(len(table)), "distinct": float(built.distinct), "encoded": float(built.encoded),
            "reused": float(built.reused), "segments": float(len(outcome.segments)),
            "written_segments": float(len(outcome.written)), "merged_segments": float(len(outcome.merged)),
            "tombstones": float(len(data.publications.deleted)), "unchanged": float(delta.unchanged),
            "changed": float(delta.changed), "added": float(delta.added), "removed": float(delta.removed),
            "split_s": split_done - started, "encode_s": encode_done - split_done,
            "index_s": index_done - encode_done, "merge_s": merge_done - index_done, "total_s": finished - started,
        }
        logger.info(
            "built engine (%s): %d publications (%d unchanged, %d changed, %d new, %d removed); %d sentences "
            "encoded, %d reused, with %s/%s; segments %s (written %s, merged %s) in %.1f s",
            "incremental" if base is not None else "full", data.publications.live, delta.unchanged, delta.changed,
            delta.added, delta.removed, built.encoded, built.reused, model.name, backend,
            ", ".join(s.id for s in outcome.segments), outcome.written or "none", outcome.merged or "none",
            finished - started,
        )

    def _install(self, segments: list[Segment], deleted: list[NDArray[np.int64]]) -> None:
        offsets = np.cumsum([0] + [len(s) for s in segments[:-1]])
        gone = np.concatenate([rows + first for rows, first in zip(deleted, offsets, strict=True)]).astype(np.int64)
        table = PublicationTable(PublicationRecords.concat(s.records for s in segments), gone)
        self._lexical = LexicalSignal(segments, deleted)
        self._data = EngineData.of(tuple(segments), table)
        self._deleted = deleted

    def _build_backend(self, model: ModelInfo, previous: Path | None) -> str:
        """The backend a build encodes with. ``auto``: the previous engine's, when it was built
        with this model (so its vectors are reused and the build stays incremental); else
        ``onnx`` on a CPU (torch should the export fail its check) and torch on a GPU."""
        backend = resolve_backend(self.settings)
        if self.options.embedding_backend != "auto":
            return backend
        if previous is not None:
            try:
                info = layout.read_info(previous)
            except EngineLoadError:
                info = None
            if info is not None and info.model_sha256 == model.sha256 and info.backend in BACKENDS:
                if info.backend != backend:
                    logger.info("RECSYS_ANNOY_EMBEDDING_BACKEND=auto: building with %s, the backend of the previous "
                                "engine, whose vectors this build reuses", info.backend)
                return info.backend
        if backend == "torch":
            return backend
        from recsys_engine_annoy.export import ensure_export

        try:
            ensure_export(model, backend, self.settings.effective_cache_dir)
        except EngineLoadError as exc:
            logger.warning("RECSYS_ANNOY_EMBEDDING_BACKEND=auto: %s; building with torch instead", exc)
            return "torch"
        return backend

    def _build_encoder(self, model: ModelInfo, backend: str) -> tuple[Encoder, bool]:
        """The encoder a build uses, and whether the build owns it (and closes it)."""
        if backend == "torch":  # one model per process: borrow it, with more threads meanwhile
            return get_encoder(model, backend, self.settings), False
        return make_encoder(model, backend, self.settings, threads=build_threads()), True

    # -- saving and loading ----------------------------------------------------------

    def save(self, folder: Path) -> EngineMetadata:
        data, info = self._require()
        layout.write_engine(folder, info, data.segments, self._deleted)
        assert self._lexical is not None
        for segment in data.segments:  # kept segments have theirs among the linked files
            target = folder / layout.SEGMENTS_DIR / segment.id
            if not has_files(target):
                write_part(self._lexical.parts[segment.id], target)
        return EngineMetadata(
            publications=info.publications,
            sentences=info.sentences,
            model=info.model,
            dimension=info.dimension,
            extra={
                "backend": info.backend,
                "model_sha256": info.model_sha256,
                "vector_dtype": info.vector_dtype,
                "format": info.format,
                "index_settings": {"trees": info.trees, "search_k": info.search_k},
                "segments": self.segment_report(),
            },
        )

    def segment_report(self) -> dict[str, Any]:
        """The segments and what the last build did with them (``EngineMetadata.extra["segments"]``)."""
        data, info = self._require()
        last = info.last_build
        return {
            "count": len(data.segments),
            "ids": [s.id for s in data.segments],
            "publications": [len(s) for s in data.segments],
            "tombstones": len(data.publications.deleted),
            "annoy": [s.id for s in data.segments if s.publication_index is not None],
            "written": list(last.get("written", [])),
            "merged": [list(group) for group in last.get("merged", [])],
            "dropped": list(last.get("dropped", [])),
        }

    @classmethod
    def load(cls, folder: Path, settings: Settings | None = None) -> AnnoyEngine:
        engine = cls(settings)
        info = layout.read_info(folder)
        model = resolve_model(engine.settings)
        _check_compatible(info, model, engine.settings, folder)
        segments, deleted = layout.read_engine(folder, info)
        engine._model, engine._info = model, info
        try:
            engine._install(segments, deleted)
        except BaseException:
            for segment in segments:
                segment.close()
            raise
        return engine

    # -- recommending ----------------------------------------------------------------

    def recommend(self, query: Query) -> list[Recommendation]:
        return self._answer(query, None)

    def recommend_many(self, queries: Sequence[Query]) -> list[list[Recommendation] | RecsysError]:
        """Every query's answer; the sentences of all their texts are encoded in one encoder call."""
        texts = texts_of(queries)
        encoded = None
        if texts:
            encoder = self.encoder()
            encoded = Encoded.of(texts, lambda sentences: encoder.encode(sentences, batch_size=QUERY_BATCH_SIZE))
        answers: list[list[Recommendation] | RecsysError] = []
        for query in queries:
            try:
                answers.append(self._answer(query, encoded))
            except RecsysError as exc:
                answers.append(exc)
        return answers

    def _answer(self, query: Query, encoded: Encoded | None) -> list[Recommendation]:
        data, _ = self._require()
        if not query.like and not query.unlike:
            qv = self.query_vectors(query, encoded)
            return rank(data, query, qv, self.fusion(query, qv))
        liked, unliked = examples_of(query)
        liked_vectors = [self.example_vectors(e, encoded) for e in liked]
        unliked_vectors = [self.example_vectors(e, encoded) for e in unliked]
        own_row = liked_vectors[0].own_row if query.publication_id is not None else None
        qv = combine(liked_vectors, unliked_vectors, own_row)
        weight = self.options.lexical_weight if query.lexical_weight is None else query.lexical_weight
        fusion = None
        if weight > 0 and self._lexical is not None:
            fusion = combine_fusion(weight, [self._lexical_scores(v, e) for v, e in zip(liked_vectors, liked,
                                                                                         strict=True)],
                                    [self._lexical_scores(v, e) for v, e in zip(unliked_vectors, unliked,
                                                                               strict=True)])
        return rank(data, query, qv, fusion)

    def _lexical_scores(self, qv: QueryVectors, example: Example) -> NDArray[np.float64]:
        assert self._lexical is not None
        if qv.own_row is not None:
            scores = self._lexical.row_scores(qv.own_row)
        else:
            scores = self._lexical.text_scores(example.text or "")
        return scores if scores is not None else np.zeros(len(self.data.publications), dtype=np.float64)

    def fusion(self, query: Query, qv: QueryVectors) -> Fusion | None:
        """The lexical half of ``query``'s hybrid score (None: a weight of 0, or no indexed word)."""
        weight = self.options.lexical_weight if query.lexical_weight is None else query.lexical_weight
        if weight <= 0 or self._lexical is None:
            return None
        if qv.own_row is not None:
            scores = self._lexical.row_scores(qv.own_row)
        else:
            scores = self._lexical.text_scores(query.text or "")
        if scores is None:
            scores = np.zeros(len(self.data.publications), dtype=np.float64)
        return Fusion(weight, scores)

    def query_vectors(self, query: Query, encoded: Encoded | None = None) -> QueryVectors:
        """The vectors of a query's own text or publication (see :meth:`example_vectors`)."""
        return self.example_vectors(Example(text=query.text, publication_id=query.publication_id), encoded)

    def example_vectors(self, example: Example, encoded: Encoded | None = None) -> QueryVectors:
        """An example's sentences and vectors: a text encoded with the engine's backend (or
        taken from ``encoded``), or a publication's stored ones (UnknownPublication for an id
        the engine lacks)."""
        data, _ = self._require()
        if example.publication_id is None:
            text = example.text or ""
            sentences = query_sentences(text)
            vectors = encoded.get(sentences) if encoded is not None else None
            if vectors is None:
                vectors = self.encoder().encode(sentences, batch_size=self.options.batch_size)
            return QueryVectors(sentences=sentences, vectors=vectors, mean=mean_vector(vectors))
        row = data.publications.row_of.get(example.publication_id)
        if row is None:
            raise UnknownPublication(
                f"publication {example.publication_id!r} is not in this engine ({data.publications.live} "
                "publications); check the id, or rebuild the engine if it was added since"
            )
        segment, local = data.locate(row)
        start, end = int(segment.starts[local]), int(segment.starts[local + 1])
        return QueryVectors(
            sentences=[segment.texts[i] for i in range(start, end)],
            vectors=np.asarray(segment.sentence_vectors[start:end], dtype=np.float32),
            mean=np.asarray(segment.publication_vectors[local], dtype=np.float32),
            own_row=row,
            sentence_searches=0,  # its own vector is in the publication index
        )

    def encoder(self) -> Encoder:
        """This process's encoder for the engine's model and backend (loaded at first use)."""
        _, info = self._require()
        assert self._model is not None
        return get_encoder(self._model, info.backend, self.settings)

    @property
    def publication_count(self) -> int:
        return self._info.publications if self._info is not None else 0

    @property
    def info(self) -> layout.EngineInfo:
        """What the engine is: model, backend, counts, segments, index settings."""
        return self._require()[1]

    @property
    def data(self) -> EngineData:
        """The segments and tables queries read (for benchmarks and tests)."""
        if self._data is None:
            raise EngineLoadError("the 'annoy' engine holds nothing: fit() or load() it first (or it was closed)")
        return self._data

    def close(self) -> None:
        if self._data is not None:
            for segment in self._data.segments:
                segment.close()
        if self._base is not None:
            self._base.close()
        self._data = self._info = self._base = None
        self._lexical = None
        self._deleted = []

    def _require(self) -> tuple[EngineData, layout.EngineInfo]:
        if self._data is None or self._info is None:
            raise EngineLoadError("the 'annoy' engine holds nothing: fit() or load() it first (or it was closed)")
        return self._data, self._info


def _check_unique(publications: Sequence[Publication]) -> None:
    seen: set[str] = set()
    for pub in publications:
        if pub.id in seen:
            raise SourceError(
                f"publication id {pub.id!r} occurs twice in the corpus; ids must be unique (the source "
                "should keep the last record of each id)"
            )
        seen.add(pub.id)


def _entries(segments: Sequence[Segment], deleted: Sequence[NDArray[np.int64]]) -> tuple[layout.SegmentEntry, ...]:
    return tuple(layout.SegmentEntry(s.id, len(s), s.sentences, len(d)) for s, d in zip(segments, deleted,
                                                                                         strict=True))


def _live_sentences(segments: Sequence[Segment], deleted: Sequence[NDArray[np.int64]]) -> int:
    total = 0
    for segment, rows in zip(segments, deleted, strict=True):
        total += segment.sentences - int(np.sum(segment.starts[rows + 1] - segment.starts[rows]))
    return total


def _check_compatible(info: layout.EngineInfo, model: ModelInfo, settings: Settings, folder: Path) -> None:
    if info.model_sha256 != model.sha256:
        raise IncompatibleEngine(
            f"the engine in {folder} was built with model {info.model!r} (files sha256 {info.model_sha256[:12]}), "
            f"but this process has {model.name!r} (sha256 {model.short_hash[:12]}) from {model.path}: set "
            "RECSYS_ANNOY_MODEL (RECSYS_MODEL) to the model it was built with on every worker, or rebuild the "
            "engine"
        )
    if info.backend not in BACKENDS:
        raise IncompatibleEngine(
            f"the engine in {folder} was built with embedding backend {info.backend!r}, which this plugin version "
            f"does not have ({', '.join(BACKENDS)}); upgrade the plugin or rebuild the engine"
        )
    wanted = annoy_settings(settings).embedding_backend
    if wanted != "auto" and wanted != info.backend:
        raise IncompatibleEngine(
            f"the engine in {folder} was built with embedding backend {info.backend!r}, but "
            f"RECSYS_ANNOY_EMBEDDING_BACKEND={wanted!r} here: queries must be encoded like the engine's sentences. "
            f"Set it to {info.backend!r} or 'auto', or rebuild the engine with {wanted!r}"
        )


def _versions() -> dict[str, str]:
    versions: dict[str, str] = {}
    for dist in ("recsys-engine-annoy", "annoy", "numpy", "onnxruntime", "torch", "sentence-transformers"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return versions
