"""The lexical engine's files: plain JSON, ``.npy`` arrays and one UTF-8 text file.

::

    lexical.json                        format, tokenizer settings (stopwords included), counts
    vocabulary.json                     the terms, in column order
    idf.npy                             float64 [terms]
    publications.json                   [{"id", "title", "label", "year"}], in row order
    publication_vectors.{data,indices,indptr}.npy   CSR [publications x terms]
    sentence_vectors.{data,indices,indptr}.npy      CSR [sentences x terms]
    sentence_offsets.npy                int64 [publications + 1]: publication p owns
                                        sentence rows offsets[p]:offsets[p + 1]
    sentences.txt                       every sentence, UTF-8, one per line
    sentence_text_offsets.npy           int64 [sentences + 1]: byte offsets into sentences.txt

Arrays load with ``allow_pickle=False`` and ``mmap_mode="r"``, and the text file is
memory-mapped, so the worker processes of one machine share those pages. Loading
checks every shape, dtype and index bound, so a damaged folder fails with
EngineLoadError naming the file instead of crashing a query later.
"""

from __future__ import annotations

import json
import mmap
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from recsys.errors import EngineLoadError, IncompatibleEngine
from recsys_engine_lexical.index import LexicalIndex, PublicationInfo
from recsys_engine_lexical.tokenizer import Tokenizer

__all__ = ["FORMAT", "MappedSentences", "load_index", "save_index"]

FORMAT = 1
CONFIG = "lexical.json"
VOCABULARY = "vocabulary.json"
PUBLICATIONS = "publications.json"
SENTENCES = "sentences.txt"


class MappedSentences:
    """Sentence texts read from a memory-mapped UTF-8 file by byte offsets (thread-safe)."""

    def __init__(self, path: Path, offsets: npt.NDArray[np.int64]) -> None:
        with path.open("rb") as handle:
            self._map = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        self._offsets = offsets

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def __getitem__(self, row: int) -> str:
        start, end = int(self._offsets[row]), int(self._offsets[row + 1])
        return self._map[start : end - 1].decode("utf-8")  # without its "\n"


def save_index(index: LexicalIndex, folder: Path) -> None:
    """Write ``index`` into ``folder`` (existing, empty) as the files listed above."""
    config = {
        "format": FORMAT,
        "weighting": "tfidf: (1 + ln tf) * smooth idf, L2-normalised; score = cosine",
        "tokenizer": index.tokenizer.to_dict(),
        "publications": len(index.publications),
        "sentences": len(index.sentences),
        "terms": len(index.terms),
    }
    _write_json(folder / CONFIG, config)
    _write_json(folder / VOCABULARY, list(index.terms))
    _write_json(
        folder / PUBLICATIONS,
        [{"id": p.id, "title": p.title, "label": p.label, "year": p.year} for p in index.publications],
    )
    np.save(folder / "idf.npy", index.idf, allow_pickle=False)
    matrices = {"publication_vectors": index.publication_vectors, "sentence_vectors": index.sentence_vectors}
    for name, matrix in matrices.items():
        for part in ("data", "indices", "indptr"):
            np.save(folder / f"{name}.{part}.npy", getattr(matrix, part), allow_pickle=False)
    np.save(folder / "sentence_offsets.npy", np.asarray(index.sentence_offsets, dtype=np.int64), allow_pickle=False)
    text_offsets = [0]
    with (folder / SENTENCES).open("wb") as handle:
        for row in range(len(index.sentences)):
            encoded = (index.sentences[row] + "\n").encode("utf-8")  # sentences hold no newline
            handle.write(encoded)
            text_offsets.append(text_offsets[-1] + len(encoded))
    np.save(folder / "sentence_text_offsets.npy", np.asarray(text_offsets, dtype=np.int64), allow_pickle=False)


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")


def load_index(folder: Path) -> LexicalIndex:
    """Load the files written by :func:`save_index`, memory-mapped.

    Raises IncompatibleEngine for another format version, EngineLoadError (naming
    the file) for a missing, unreadable or inconsistent file.
    """
    config = _read_json(folder, CONFIG)
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        found = config.get("format") if isinstance(config, dict) else None
        raise IncompatibleEngine(
            f"{folder / CONFIG} has lexical format {found!r}; this plugin reads format {FORMAT}: "
            "rebuild the engine with this version, or install the plugin version that built it"
        )
    try:
        tokenizer = Tokenizer.from_dict(config.get("tokenizer") or {})
    except ValueError as exc:
        raise EngineLoadError(f"{folder / CONFIG}: {exc}") from exc
    terms = _read_json(folder, VOCABULARY)
    if not isinstance(terms, list) or not all(isinstance(t, str) for t in terms):
        raise EngineLoadError(f"{folder / VOCABULARY} must be a JSON list of strings")
    publications = _publications(folder)
    idf = _array(folder, "idf.npy", (len(terms),), "f")
    offsets = _array(folder, "sentence_offsets.npy", (len(publications) + 1,), "i")
    _check_offsets(folder / "sentence_offsets.npy", offsets, None)
    n_sentences = int(offsets[-1])
    text_offsets = _array(folder, "sentence_text_offsets.npy", (n_sentences + 1,), "i")
    text_path = folder / SENTENCES
    _check_offsets(folder / "sentence_text_offsets.npy", text_offsets, _size(text_path))
    return LexicalIndex(
        tokenizer=tokenizer,
        terms=terms,
        idf=idf,
        publications=publications,
        publication_vectors=_matrix(folder, "publication_vectors", (len(publications), len(terms))),
        sentence_vectors=_matrix(folder, "sentence_vectors", (n_sentences, len(terms))),
        sentence_offsets=offsets,
        sentences=MappedSentences(text_path, text_offsets) if n_sentences else [],
    )


def _read_json(folder: Path, name: str) -> Any:
    path = folder / name
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise EngineLoadError(f"{path} is missing: this folder does not hold a lexical engine") from exc
    except (OSError, ValueError) as exc:
        raise EngineLoadError(f"cannot read {path}: {exc}") from exc


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError as exc:
        raise EngineLoadError(f"cannot read {path}: {exc}") from exc


def _publications(folder: Path) -> list[PublicationInfo]:
    records = _read_json(folder, PUBLICATIONS)
    if not isinstance(records, list):
        raise EngineLoadError(f"{folder / PUBLICATIONS} must be a JSON list")
    try:
        return [
            PublicationInfo(
                id=str(r["id"]), title=str(r["title"]),
                label=None if r.get("label") is None else str(r["label"]),
                year=None if r.get("year") is None else int(r["year"]),
            )
            for r in records
        ]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise EngineLoadError(f"{folder / PUBLICATIONS} has a malformed record ({type(exc).__name__}: {exc})") from exc


def _array(folder: Path, name: str, shape: tuple[int, ...] | None, kind: str) -> npt.NDArray[Any]:
    path = folder / name
    try:
        array: npt.NDArray[Any] = np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError as exc:
        raise EngineLoadError(f"{path} is missing: rebuild the engine") from exc
    except (OSError, ValueError) as exc:
        raise EngineLoadError(f"cannot load {path} as a plain numpy array: {exc}") from exc
    if array.dtype.kind != kind or (shape is not None and array.shape != shape) or array.ndim != 1:
        raise EngineLoadError(
            f"{path} holds {array.dtype} {array.shape}, expected a {'float' if kind == 'f' else 'integer'} "
            f"vector{'' if shape is None else ' of shape ' + str(shape)}: rebuild the engine"
        )
    return array


def _check_offsets(path: Path, offsets: npt.NDArray[Any], end: int | None) -> None:
    if offsets[0] != 0 or np.any(np.diff(offsets) < 0) or (end is not None and offsets[-1] != end):
        raise EngineLoadError(f"{path} holds offsets that are not ascending from 0 to the end: rebuild the engine")


def _matrix(folder: Path, name: str, shape: tuple[int, int]) -> sp.csr_array:
    indptr = _array(folder, f"{name}.indptr.npy", (shape[0] + 1,), "i")
    nnz = int(indptr[-1])
    data = _array(folder, f"{name}.data.npy", (nnz,), "f")
    indices = _array(folder, f"{name}.indices.npy", (nnz,), "i")
    _check_offsets(folder / f"{name}.indptr.npy", indptr, nnz)
    if indices.dtype != indptr.dtype or data.dtype != np.float32:
        raise EngineLoadError(f"{folder / name}.*.npy have mixed dtypes: rebuild the engine")
    if nnz and (int(indices.min()) < 0 or int(indices.max()) >= shape[1]):
        raise EngineLoadError(f"{folder / name}.indices.npy points outside the vocabulary: rebuild the engine")
    matrix = sp.csr_array((data, indices, indptr), shape=shape, copy=False)
    matrix.has_sorted_indices = True  # written sorted by save_index; never re-sorted in place
    return matrix
