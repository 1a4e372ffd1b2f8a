"""Publications cut into sentences, in the order the engine stores them.

Publication ``p`` owns the sentences ``starts[p]:starts[p + 1]``: its title, abstract
and full text, each split with the core's splitter (:func:`recsys.text.split_sentences`)
on its own, so that a title without final punctuation never runs into the abstract's
first sentence.

Sentences are keyed by a hash of their text (:func:`sentence_key`): the same text
always has the same vector, so identical sentences are encoded once, and a rebuild
takes the vectors of unchanged sentences from the previous engine. Publications are
keyed by a fingerprint of the fields the engine indexes or shows (:func:`fingerprint`):
an incremental build keeps a publication whose id and fingerprint are unchanged.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from recsys.domain import Publication
from recsys.errors import SourceError
from recsys.text import split_sentences

__all__ = ["SentenceTable", "fingerprint", "publication_sentences", "sentence_key", "split_corpus"]


def sentence_key(text: str) -> bytes:
    """A 16-byte hash of a sentence's text: the key of its vector."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()


def fingerprint(pub: Publication) -> bytes:
    """sha256 of the canonical JSON of what the engine indexes (title, abstract, text) and
    shows or filters on (id, label, year): equal exactly when a kept copy would answer alike."""
    fields = {"id": pub.id, "title": pub.title, "abstract": pub.abstract, "text": pub.text, "label": pub.label,
              "year": pub.year}
    canonical = json.dumps(fields, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).digest()


def publication_sentences(pub: Publication) -> list[str]:
    """The sentences indexed for ``pub``: title, abstract and full text, in that order."""
    sentences: list[str] = []
    for part in (pub.title, pub.abstract, pub.text or ""):
        if part:
            sentences.extend(split_sentences(part))
    return sentences


@dataclass(frozen=True)
class SentenceTable:
    """Every sentence of a corpus with the publication that owns it."""

    texts: list[str]
    starts: NDArray[np.int64]  # len(publications) + 1 offsets into texts

    @property
    def owners(self) -> NDArray[np.int32]:
        """The publication row of each sentence."""
        counts = np.diff(self.starts)
        return np.repeat(np.arange(len(counts), dtype=np.int32), counts)

    def __len__(self) -> int:
        return len(self.texts)


def split_corpus(
    publications: Sequence[Publication],
    progress: Callable[[int], None] | None = None,
) -> SentenceTable:
    """Split every publication; raises SourceError for a duplicate id or a publication
    without any text to index."""
    texts: list[str] = []
    starts = np.zeros(len(publications) + 1, dtype=np.int64)
    seen: set[str] = set()
    for row, pub in enumerate(publications):
        if pub.id in seen:
            raise SourceError(
                f"publication id {pub.id!r} occurs twice in the corpus; ids must be unique (the source "
                "should keep the last record of each id)"
            )
        seen.add(pub.id)
        sentences = publication_sentences(pub)
        if not sentences:
            raise SourceError(f"publication {pub.id!r} has no text to index (title, abstract and text are empty)")
        texts.extend(sentences)
        starts[row + 1] = len(texts)
        if progress is not None and (row % 1000 == 999 or row + 1 == len(publications)):
            progress(row + 1)
    return SentenceTable(texts, starts)
