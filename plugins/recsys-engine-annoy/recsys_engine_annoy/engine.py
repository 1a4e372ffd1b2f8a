"""AnnoyEngine: SentenceTransformer sentence vectors, Annoy indexes, mean-vector ranking.

Build (:meth:`AnnoyEngine.fit`): every publication's title, abstract and full text are
split into sentences; each distinct sentence is encoded once (or its vector taken from
the previous engine, :mod:`recsys_engine_annoy.vectors`); each publication's vector is
the normalised mean of its sentence vectors; two angular Annoy indexes are built, one
over sentences and one over publications (:mod:`recsys_engine_annoy.ann`).

Query (:meth:`AnnoyEngine.recommend`): a text is split and encoded with the backend the
engine was built with; a by-id query uses the publication's stored sentence vectors and
needs no model. Ranking and evidence: :mod:`recsys_engine_annoy.ranking`.

Compatibility: an engine remembers its model (name and a hash of its files) and its
embedding backend. Loading it where the model differs is refused (IncompatibleEngine);
so is loading it where ``RECSYS_ANNOY_EMBEDDING_BACKEND`` names another backend. With
``auto`` the process encodes queries with the engine's own backend.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

import numpy as np

from recsys.config import Settings
from recsys.domain import Publication, Query, Recommendation
from recsys.engine import NULL_PROGRESS, Engine, EngineMetadata, Progress
from recsys.errors import EngineLoadError, IncompatibleEngine, SourceError, UnknownPublication
from recsys.text import split_sentences
from recsys_engine_annoy import storage
from recsys_engine_annoy.ann import EXACT_BELOW, PUBLICATIONS_EXACT_BELOW, AnnSettings, VectorIndex
from recsys_engine_annoy.corpus import split_corpus
from recsys_engine_annoy.encoders import (
    BACKENDS,
    Encoder,
    TorchEncoder,
    build_threads,
    get_encoder,
    make_encoder,
    resolve_backend,
)
from recsys_engine_annoy.files import load_array, save_array
from recsys_engine_annoy.model import ModelInfo, resolve_model
from recsys_engine_annoy.ranking import EngineData, QueryVectors, mean_vector, rank
from recsys_engine_annoy.settings import AnnoySettings, annoy_settings
from recsys_engine_annoy.vectors import PreviousVectors, publication_means, sentence_vectors

__all__ = ["AnnoyEngine"]

logger = logging.getLogger(__name__)


class AnnoyEngine(Engine):
    """The default engine; see the module docstring and docs/engine-annoy.md."""

    name = "annoy"

    def __init__(self, settings: Settings | None = None) -> None:
        super().__init__(settings)
        #: This plugin's settings (RECSYS_ANNOY_*), read once.
        self.options: AnnoySettings = annoy_settings(self.settings)
        self._data: EngineData | None = None
        self._info: storage.EngineInfo | None = None
        self._model: ModelInfo | None = None
        self._texts: storage.SentenceTexts | None = None
        #: What the last fit() did: sentences encoded and reused, seconds per stage.
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
        model = resolve_model(self.settings)
        backend = self._build_backend(model)
        total = len(publications)
        table = split_corpus(publications, lambda done: progress("split", done, total))
        split_done = time.monotonic()

        encoder, owned = self._build_encoder(model, backend)
        try:
            old = (
                PreviousVectors.open(previous, model_sha256=model.sha256, backend=backend, dimension=encoder.dimension)
                if previous is not None else None
            )

            def encode(texts: Sequence[str]) -> np.ndarray:
                count = len(texts)
                progress("encode", 0, count)
                return encoder.encode(texts, batch_size=self.options.batch_size,
                                      progress=lambda done: progress("encode", done, count))

            if isinstance(encoder, TorchEncoder):
                with encoder.threads_for_build():
                    built = sentence_vectors(table.texts, encode, encoder.dimension, old)
            else:
                built = sentence_vectors(table.texts, encode, encoder.dimension, old)
            dimension = encoder.dimension
        finally:
            if owned:
                encoder.close()
        encode_done = time.monotonic()

        paper_vectors = publication_means(built.vectors, table.starts)
        trees, search_k = self.options.trees, self.options.search_k
        sentence_settings = _index_settings(len(table), trees, search_k, publications=False)
        paper_settings = _index_settings(total, trees, search_k, publications=True)
        progress("index", 0, 2)
        sentence_index = VectorIndex.build(np.asarray(built.vectors, dtype=np.float32), sentence_settings)
        # (an exact sentence index keeps that float32 copy; only small corpora are searched exactly)
        progress("index", 1, 2)
        paper_index = VectorIndex.build(paper_vectors, paper_settings)
        progress("index", 2, 2)

        self.close()
        self._model = model
        self._data = EngineData(
            publications=storage.PublicationTable.from_publications(publications),
            texts=table.texts,
            starts=table.starts,
            owners=table.owners,
            sentence_vectors=built.vectors,
            publication_vectors=paper_vectors,
            sentence_index=sentence_index,
            publication_index=paper_index,
        )
        self._info = storage.EngineInfo(
            model=model.name, model_sha256=model.sha256, backend=backend, dimension=dimension,
            publications=total, sentences=len(table), sentence_index=sentence_settings,
            publication_index=paper_settings, versions=_versions(),
        )
        finished = time.monotonic()
        self.build_stats = {
            "sentences": float(len(table)), "distinct": float(built.distinct), "encoded": float(built.encoded),
            "reused": float(built.reused), "split_s": split_done - started, "encode_s": encode_done - split_done,
            "index_s": finished - encode_done, "total_s": finished - started,
        }
        logger.info(
            "built engine: %d publications, %d sentences (%d encoded, %d reused) with %s/%s in %.1f s",
            total, len(table), built.encoded, built.reused, model.name, backend, finished - started,
        )

    def _build_backend(self, model: ModelInfo) -> str:
        backend = resolve_backend(self.settings)
        if self.options.embedding_backend != "auto" or backend == "torch":
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
        storage.write_info(folder, info)
        data.publications.write(folder / storage.PUBLICATIONS_FILE)
        storage.write_sentences(folder, [data.texts[row] for row in range(len(data.texts))])
        save_array(folder / storage.STARTS_FILE, data.starts)
        save_array(folder / storage.OWNERS_FILE, data.owners)
        save_array(folder / storage.SENTENCE_VECTORS_FILE, data.sentence_vectors)
        save_array(folder / storage.PUBLICATION_VECTORS_FILE, data.publication_vectors)
        data.sentence_index.save(folder / storage.SENTENCE_INDEX_FILE)
        data.publication_index.save(folder / storage.PUBLICATION_INDEX_FILE)
        return EngineMetadata(
            publications=info.publications,
            sentences=info.sentences,
            model=info.model,
            dimension=info.dimension,
            extra={
                "backend": info.backend,
                "model_sha256": info.model_sha256,
                "vector_dtype": info.vector_dtype,
                "sentence_index": info.sentence_index.to_dict(),
                "publication_index": info.publication_index.to_dict(),
            },
        )

    @classmethod
    def load(cls, folder: Path, settings: Settings | None = None) -> AnnoyEngine:
        engine = cls(settings)
        info = storage.read_info(folder)
        model = resolve_model(engine.settings)
        _check_compatible(info, model, engine.settings, folder)
        pubs = storage.PublicationTable.read(folder / storage.PUBLICATIONS_FILE, info.publications)
        starts = load_array(folder / storage.STARTS_FILE, dtype="int64", ndim=1)
        owners = load_array(folder / storage.OWNERS_FILE, dtype="int32", ndim=1, mmap=True)
        sentence_vectors = load_array(folder / storage.SENTENCE_VECTORS_FILE, dtype=info.vector_dtype, ndim=2,
                                      mmap=True)
        paper_vectors = load_array(folder / storage.PUBLICATION_VECTORS_FILE, dtype="float32", ndim=2, mmap=True)
        storage.check_rows(storage.STARTS_FILE, starts, info.publications + 1)
        storage.check_rows(storage.OWNERS_FILE, owners, info.sentences)
        storage.check_rows(storage.SENTENCE_VECTORS_FILE, sentence_vectors, info.sentences, (info.dimension,))
        storage.check_rows(storage.PUBLICATION_VECTORS_FILE, paper_vectors, info.publications, (info.dimension,))
        if starts[0] != 0 or starts[-1] != info.sentences or np.any(np.diff(starts) <= 0):
            raise EngineLoadError(f"{storage.STARTS_FILE} in {folder} is damaged; rebuild the engine")
        texts = storage.SentenceTexts(folder, info.sentences)
        # Whether a search is exact follows this code's rule, not the one of the build
        # (the files are the same either way); trees and a fixed search_k are the build's.
        sentence_settings = _index_settings(info.sentences, info.sentence_index.trees,
                                            info.sentence_index.search_k, publications=False)
        paper_settings = _index_settings(info.publications, info.publication_index.trees,
                                         info.publication_index.search_k, publications=True)
        sentence_index = VectorIndex.load(
            folder / storage.SENTENCE_INDEX_FILE, info.sentences, info.dimension, sentence_settings,
            # an exact (small) index is scanned in float32: a private copy of at most EXACT_BELOW rows
            np.asarray(sentence_vectors, dtype=np.float32) if sentence_settings.exact else None,
        )
        paper_index = VectorIndex.load(
            folder / storage.PUBLICATION_INDEX_FILE, info.publications, info.dimension, paper_settings,
            paper_vectors if paper_settings.exact else None,  # type: ignore[arg-type]  # float32, mapped
        )
        info = dataclasses.replace(info, sentence_index=sentence_settings, publication_index=paper_settings)
        engine._model, engine._info, engine._texts = model, info, texts
        engine._data = EngineData(
            publications=pubs, texts=texts, starts=starts, owners=owners,  # type: ignore[arg-type]
            sentence_vectors=sentence_vectors, publication_vectors=paper_vectors,  # type: ignore[arg-type]
            sentence_index=sentence_index, publication_index=paper_index,
        )
        return engine

    # -- recommending ----------------------------------------------------------------

    def recommend(self, query: Query) -> list[Recommendation]:
        data, _ = self._require()
        return rank(data, query, self.query_vectors(query))

    def query_vectors(self, query: Query) -> QueryVectors:
        """The query's sentences and vectors: a text encoded with the engine's backend, or
        a publication's stored ones (UnknownPublication for an id the engine lacks)."""
        data, _ = self._require()
        if query.publication_id is None:
            text = query.text or ""
            sentences = split_sentences(text) or [text]
            vectors = self.encoder().encode(sentences, batch_size=self.options.batch_size)
            return QueryVectors(sentences=sentences, vectors=vectors, mean=mean_vector(vectors))
        row = data.publications.row_of.get(query.publication_id)
        if row is None:
            raise UnknownPublication(
                f"publication {query.publication_id!r} is not in this engine ({len(data.publications)} "
                "publications); check the id, or rebuild the engine if it was added since"
            )
        start, end = int(data.starts[row]), int(data.starts[row + 1])
        return QueryVectors(
            sentences=[data.texts[i] for i in range(start, end)],
            vectors=np.asarray(data.sentence_vectors[start:end], dtype=np.float32),
            mean=np.asarray(data.publication_vectors[row], dtype=np.float32),
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
    def info(self) -> storage.EngineInfo:
        """What the engine is: model, backend, counts, index settings."""
        return self._require()[1]

    @property
    def data(self) -> EngineData:
        """The arrays and indexes queries read (for benchmarks and tests)."""
        return self._require()[0]

    def close(self) -> None:
        if self._data is not None:
            self._data.sentence_index.close()
            self._data.publication_index.close()
        if self._texts is not None:
            self._texts.close()
        self._data = self._info = self._texts = None

    def _require(self) -> tuple[EngineData, storage.EngineInfo]:
        if self._data is None or self._info is None:
            raise EngineLoadError("the 'annoy' engine holds nothing: fit() or load() it first (or it was closed)")
        return self._data, self._info


def _index_settings(items: int, trees: int, search_k: int, *, publications: bool) -> AnnSettings:
    """How an index of ``items`` vectors is built and searched (0: derived). The publication
    index, whose float32 vectors are mapped from disk, is searched exactly up to a larger size."""
    return AnnSettings.for_items(items, trees, search_k, PUBLICATIONS_EXACT_BELOW if publications else EXACT_BELOW)


def _check_compatible(info: storage.EngineInfo, model: ModelInfo, settings: Settings, folder: Path) -> None:
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
