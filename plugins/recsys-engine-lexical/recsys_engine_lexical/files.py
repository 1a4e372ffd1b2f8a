"""The lexical engine's files: plain JSON, ``.npy`` arrays and UTF-8 text files, in segments.

::

    lexical.json                         format 2, weighting, tokenizer settings (stopwords included)
    segments.json                        the live segments in order with their counts, the next
                                         segment number, totals, and what the last build did
    tombstones/<segment>.npy             int32: ascending tombstoned rows of that segment
                                         (only for segments that have some)
    segments/<segment>/                  written once, never changed:
        segment.json                     id and counts
        vocabulary.json                  the segment's terms, sorted (its column order)
        document_frequency.npy           int64 [terms]: publications of the segment holding each term
        publications.json                [{"id", "title", "label", "year"}], in row order
        fingerprints.npy                 uint8 [publications x 32]: sha256 of each publication's content
        publication_tf.{data,indices,indptr}.npy   CSR [publications x terms], float32 1 + ln tf
        sentence_tf.{data,indices,indptr}.npy      CSR [sentences x terms], float32 1 + ln tf
        sentence_offsets.npy             int64 [publications + 1]: publication p owns
                                         sentence rows offsets[p]:offsets[p + 1]
        sentences.txt                    every sentence, UTF-8, one per line
        sentence_text_offsets.npy        int64 [sentences + 1]: byte offsets into sentences.txt

Only ``segments.json`` and the tombstones change when a build keeps a segment; the
segment's files are hard-linked (or copied) from ``previous`` byte for byte. Arrays
load with ``allow_pickle=False`` and ``mmap_mode="r"``, and the text files are
memory-mapped, so the worker processes of one machine share those pages. Loading
checks every shape, dtype and index bound, so a damaged folder fails with
EngineLoadError naming the file instead of crashing a query later. A first-wave
folder (format 1, no segments) is read by :mod:`recsys_engine_lexical.firstwave`.
"""

from __future__ import annotations

import json
import mmap
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from recsys.errors import EngineLoadError, IncompatibleEngine
from recsys_engine_lexical.segment import FINGERPRINT_BYTES, IntArray, PublicationInfo, Segment
from recsys_engine_lexical.tokenizer import Tokenizer

__all__ = [
    "FORMAT", "Folder", "MappedSentences", "array", "check_offsets", "load_folder", "matrix", "publications",
    "read_config", "read_json", "save_folder", "write_json",
]

FORMAT = 2
FIRST_WAVE_FORMAT = 1
CONFIG = "lexical.json"
STATE = "segments.json"
SEGMENTS = "segments"
TOMBSTONES = "tombstones"
WEIGHTING = "tfidf: (1 + ln tf) * smooth idf, L2-normalised; score = cosine"
SEGMENT_FILES = (
    "segment.json", "vocabulary.json", "document_frequency.npy", "publications.json", "fingerprints.npy",
    *(f"{m}.{p}.npy" for m in ("publication_tf", "sentence_tf") for p in ("data", "indices", "indptr")),
    "sentence_offsets.npy", "sentences.txt", "sentence_text_offsets.npy",
)
_SEGMENT_ID = re.compile(r"s[0-9]{6,12}")


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


@dataclass(frozen=True)
class Folder:
    """What :func:`load_folder` reads: segments oldest first, their tombstones, the next
    segment number, and for a first-wave folder its stored idf."""

    tokenizer: Tokenizer
    segments: list[Segment]
    deleted: dict[str, IntArray] = field(default_factory=dict)
    next_number: int = 1
    idf: npt.NDArray[np.float64] | None = None


# -- saving ----------------------------------------------------------------------


def save_folder(
    folder: Path,
    tokenizer: Tokenizer,
    segments: Sequence[Segment],
    deleted: Mapping[str, IntArray],
    *,
    next_number: int,
    totals: Mapping[str, int],
    build: Mapping[str, Any],
) -> None:
    """Write a segmented engine into ``folder`` (existing, empty). A segment read from
    disk (``segment.folder``) is hard-linked or copied file by file; the others are written."""
    write_json(folder / CONFIG, {"format": FORMAT, "weighting": WEIGHTING, "tokenizer": tokenizer.to_dict()})
    (folder / SEGMENTS).mkdir()
    for segment in segments:
        target = folder / SEGMENTS / segment.id
        target.mkdir()
        if segment.folder is not None:
            for name in SEGMENT_FILES:
                _link_or_copy(segment.folder / name, target / name)
        else:
            _write_segment(segment, target)
    rows = {s.id: np.asarray(deleted.get(s.id, ()), dtype=np.int64) for s in segments}
    if any(len(r) for r in rows.values()):
        (folder / TOMBSTONES).mkdir()
    for segment_id, ordinals in rows.items():
        if len(ordinals):
            np.save(folder / TOMBSTONES / f"{segment_id}.npy", np.sort(ordinals).astype(np.int32), allow_pickle=False)
    write_json(folder / STATE, {
        "format": FORMAT,
        "next": next_number,
        "segments": [
            {"id": s.id, "publications": len(s), "sentences": s.sentence_count, "deleted": len(rows[s.id])}
            for s in segments
        ],
        **totals,
        "build": dict(build),
    })


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _write_segment(segment: Segment, folder: Path) -> None:
    write_json(folder / "segment.json", {
        "id": segment.id, "publications": len(segment), "sentences": segment.sentence_count,
        "terms": len(segment.terms),
    })
    write_json(folder / "vocabulary.json", list(segment.terms))
    write_json(
        folder / "publications.json",
        [{"id": p.id, "title": p.title, "label": p.label, "year": p.year} for p in segment.publications],
    )
    np.save(folder / "document_frequency.npy", np.asarray(segment.document_frequency, np.int64), allow_pickle=False)
    np.save(folder / "fingerprints.npy", np.asarray(segment.fingerprints, np.uint8), allow_pickle=False)
    for name, tf in (("publication_tf", segment.publication_tf), ("sentence_tf", segment.sentence_tf)):
        index_type = np.int32 if max(tf.nnz, tf.shape[1]) < 2**31 else np.int64
        np.save(folder / f"{name}.data.npy", np.asarray(tf.data, np.float32), allow_pickle=False)
        np.save(folder / f"{name}.indices.npy", np.asarray(tf.indices).astype(index_type), allow_pickle=False)
        np.save(folder / f"{name}.indptr.npy", np.asarray(tf.indptr).astype(index_type), allow_pickle=False)
    np.save(folder / "sentence_offsets.npy", np.asarray(segment.sentence_offsets, np.int64), allow_pickle=False)
    write_sentences(folder / "sentences.txt", folder / "sentence_text_offsets.npy", segment)


def write_sentences(text_path: Path, offsets_path: Path, segment: Segment) -> None:
    """Every sentence of ``segment`` on its own line, and their byte offsets."""
    text_offsets = [0]
    with text_path.open("wb") as handle:
        for row in range(segment.sentence_count):
            encoded = (segment.sentences[row] + "\n").encode("utf-8")  # sentences hold no newline
            handle.write(encoded)
            text_offsets.append(text_offsets[-1] + len(encoded))
    np.save(offsets_path, np.asarray(text_offsets, dtype=np.int64), allow_pickle=False)


def write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")


# -- loading ---------------------------------------------------------------------


def read_config(folder: Path) -> tuple[int, Tokenizer]:
    """The format and tokenizer of the engine in ``folder``; IncompatibleEngine for an
    unknown format, EngineLoadError when it is missing or unreadable."""
    config = read_json(folder, CONFIG)
    found = config.get("format") if isinstance(config, dict) else None
    if found not in (FORMAT, FIRST_WAVE_FORMAT) or isinstance(found, bool):
        raise IncompatibleEngine(
            f"{folder / CONFIG} has lexical format {found!r}; this plugin reads formats {FIRST_WAVE_FORMAT} and "
            f"{FORMAT}: rebuild the engine with this version, or install the plugin version that built it"
        )
    assert isinstance(config, dict) and isinstance(found, int)
    try:
        return found, Tokenizer.from_dict(config.get("tokenizer") or {})
    except ValueError as exc:
        raise EngineLoadError(f"{folder / CONFIG}: {exc}") from exc


def load_folder(folder: Path) -> Folder:
    """Load the engine in ``folder`` (either format), memory-mapped."""
    found, tokenizer = read_config(folder)
    if found == FIRST_WAVE_FORMAT:
        from recsys_engine_lexical.firstwave import load_first_wave

        segment, idf = load_first_wave(folder)
        return Folder(tokenizer, [segment], idf=idf)
    state = read_json(folder, STATE)
    entries = state.get("segments") if isinstance(state, dict) else None
    next_number = state.get("next") if isinstance(state, dict) else None
    if not isinstance(entries, list) or not isinstance(next_number, int) or isinstance(next_number, bool):
        raise EngineLoadError(f"{folder / STATE} must hold 'segments' (a list) and 'next' (a number)")
    segments, deleted = [], {}
    for entry in entries:
        segment_id = entry.get("id") if isinstance(entry, dict) else None
        if not isinstance(segment_id, str) or not _SEGMENT_ID.fullmatch(segment_id):
            raise EngineLoadError(f"{folder / STATE} names a segment {segment_id!r}, not an id like 's000001'")
        if int(segment_id[1:]) >= next_number:
            raise EngineLoadError(f"{folder / STATE}: segment {segment_id} is not below 'next' ({next_number})")
        segment = _load_segment(folder / SEGMENTS / segment_id, segment_id)
        segments.append(segment)
        count = entry.get("deleted", 0)
        if count:
            deleted[segment_id] = _tombstones(folder / TOMBSTONES / f"{segment_id}.npy", len(segment), count)
    if len({s.id for s in segments}) != len(segments):
        raise EngineLoadError(f"{folder / STATE} lists a segment twice")
    return Folder(tokenizer, segments, deleted, next_number)


def _tombstones(path: Path, publications: int, count: object) -> IntArray:
    rows = array(path.parent, path.name, None, "i")
    ordered = len(rows) == 0 or (rows[0] >= 0 and rows[-1] < publications and not np.any(np.diff(rows) <= 0))
    if rows.shape != (count,) or not ordered:
        raise EngineLoadError(
            f"{path} must hold {count} ascending rows below {publications}, as segments.json says: rebuild the engine"
        )
    return rows


def _load_segment(folder: Path, segment_id: str) -> Segment:
    info = read_json(folder, "segment.json")
    if not isinstance(info, dict) or info.get("id") != segment_id:
        raise EngineLoadError(f"{folder / 'segment.json'} does not describe segment {segment_id}: rebuild the engine")
    terms = read_json(folder, "vocabulary.json")
    if not isinstance(terms, list) or not all(isinstance(t, str) for t in terms):
        raise EngineLoadError(f"{folder / 'vocabulary.json'} must be a JSON list of strings")
    infos = publications(folder, "publications.json")
    n = len(infos)
    fingerprints = array(folder, "fingerprints.npy", (n, FINGERPRINT_BYTES), "u", ndim=2)
    frequency = array(folder, "document_frequency.npy", (len(terms),), "i")
    offsets = array(folder, "sentence_offsets.npy", (n + 1,), "i")
    check_offsets(folder / "sentence_offsets.npy", offsets, None)
    n_sentences = int(offsets[-1])
    text_offsets = array(folder, "sentence_text_offsets.npy", (n_sentences + 1,), "i")
    text_path = folder / "sentences.txt"
    check_offsets(folder / "sentence_text_offsets.npy", text_offsets, _size(text_path))
    return Segment(
        id=segment_id,
        publications=infos,
        fingerprints=fingerprints,
        terms=terms,
        document_frequency=frequency,
        publication_tf=matrix(folder, "publication_tf", (n, len(terms))),
        sentence_tf=matrix(folder, "sentence_tf", (n_sentences, len(terms))),
        sentence_offsets=offsets,
        sentences=MappedSentences(text_path, text_offsets) if n_sentences else [],
        folder=folder,
    )


def read_json(folder: Path, name: str) -> Any:
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


def publications(folder: Path, name: str) -> list[PublicationInfo]:
    """The publication records of ``folder / name``."""
    records = read_json(folder, name)
    if not isinstance(records, list):
        raise EngineLoadError(f"{folder / name} must be a JSON list")
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
        raise EngineLoadError(f"{folder / name} has a malformed record ({type(exc).__name__}: {exc})") from exc


def array(folder: Path, name: str, shape: tuple[int, ...] | None, kind: str, *, ndim: int = 1) -> npt.NDArray[Any]:
    """A plain ``.npy`` array, memory-mapped, of dtype kind ``kind`` and ``shape`` (if given)."""
    path = folder / name
    try:
        loaded: npt.NDArray[Any] = np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError as exc:
        raise EngineLoadError(f"{path} is missing: rebuild the engine") from exc
    except (OSError, ValueError) as exc:
        raise EngineLoadError(f"cannot load {path} as a plain numpy array: {exc}") from exc
    if loaded.dtype.kind != kind or (shape is not None and loaded.shape != shape) or loaded.ndim != ndim:
        what = {"f": "float", "i": "integer", "u": "unsigned integer"}[kind]
        raise EngineLoadError(
            f"{path} holds {loaded.dtype} {loaded.shape}, expected a {what} "
            f"{'vector' if ndim == 1 else 'matrix'}{'' if shape is None else ' of shape ' + str(shape)}: "
            "rebuild the engine"
        )
    return np.asarray(loaded)  # a plain view of the map: slicing a np.memmap is slow


def check_offsets(path: Path, offsets: npt.NDArray[Any], end: int | None) -> None:
    if offsets[0] != 0 or np.any(np.diff(offsets) < 0) or (end is not None and offsets[-1] != end):
        raise EngineLoadError(f"{path} holds offsets that are not ascending from 0 to the end: rebuild the engine")


def matrix(folder: Path, name: str, shape: tuple[int, int]) -> sp.csr_array:
    """The CSR matrix ``name.{data,indices,indptr}.npy``, memory-mapped, every bound checked."""
    indptr = array(folder, f"{name}.indptr.npy", (shape[0] + 1,), "i")
    nnz = int(indptr[-1])
    data = array(folder, f"{name}.data.npy", (nnz,), "f")
    indices = array(folder, f"{name}.indices.npy", (nnz,), "i")
    check_offsets(folder / f"{name}.indptr.npy", indptr, nnz)
    if indices.dtype != indptr.dtype or data.dtype != np.float32:
        raise EngineLoadError(f"{folder / name}.*.npy have mixed dtypes: rebuild the engine")
    if nnz and (int(indices.min()) < 0 or int(indices.max()) >= shape[1]):
        raise EngineLoadError(f"{folder / name}.indices.npy points outside the vocabulary: rebuild the engine")
    loaded = sp.csr_array((data, indices, indptr), shape=shape, copy=False)
    loaded.has_sorted_indices = True  # written sorted; never re-sorted in place
    return loaded
