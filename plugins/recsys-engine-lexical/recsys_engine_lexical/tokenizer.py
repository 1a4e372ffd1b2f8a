"""Words of a sentence, as the lexical engine indexes them.

A token is a run of Unicode letters and digits (``[^\\W_]+`` after NFKC
normalisation and case folding), at least two characters long, not only digits,
and not a stopword. With ``stemming`` on, plurals are folded onto their singular
by the S-stemmer of Harman (1991): ``studies`` → ``study``, ``images`` →
``image``, ``models`` → ``model`` (``-ss`` and ``-us`` words are left alone).

The built-in stopword list is short: English function words plus a few words of
scientific boilerplate ("paper", "propose", "results", ...). An index stores the
tokenizer's settings, stopwords included, so queries are always tokenized exactly
like the corpus was.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["STOPWORDS", "TermMemo", "Tokenizer", "plural_stem"]

_TOKEN = re.compile(r"[^\W_]+")

STOPWORDS: frozenset[str] = frozenset(
    """
    a about above after again against all also am an and any are as at be because been before being below
    between both but by can could did do does doing down during each few for from further had has have
    having he her here hers herself him himself his how i if in into is it its itself just me more most my
    myself no nor not now of off on once only or other our ours ourselves out over own same she should so
    some such than that the their theirs them themselves then there these they this those through to too
    under until up very was we were what when where which while who whom why will with would you your yours
    yourself yourselves via using use used based paper propose proposed show shows results approach method
    methods new
    """.split()
)


def plural_stem(word: str) -> str:
    """Fold an English plural onto its singular (Harman's S-stemmer); other words unchanged."""
    if len(word) > 4 and word.endswith("ies") and not word.endswith(("eies", "aies")):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("es") and not word.endswith(("aes", "ees", "oes")):
        return word[:-1]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("us", "ss")):
        return word[:-1]
    return word


@dataclass(frozen=True)
class Tokenizer:
    """Turns a sentence into index terms. Immutable and thread-safe."""

    stemming: bool = True
    min_length: int = 2
    stopwords: frozenset[str] = field(default=STOPWORDS)

    def __call__(self, text: str, memo: TermMemo | None = None) -> list[str]:
        """The terms of ``text``, in order, repeats kept.

        ``memo`` (from :meth:`memo`) speeds up tokenizing a whole corpus; it grows
        with the vocabulary, so leave it out for queries.
        """
        tokens = _TOKEN.findall(unicodedata.normalize("NFKC", text).casefold())
        if memo is not None:
            return [term for term in map(memo.__getitem__, tokens) if term]
        return [term for term in map(self.term, tokens) if term is not None]

    def memo(self) -> TermMemo:
        """A token -> term cache for tokenizing many texts with this tokenizer."""
        return TermMemo(self)

    def term(self, token: str) -> str | None:
        """The index term of one lowercase token, or None when it is dropped."""
        if len(token) < self.min_length or token.isdigit() or token in self.stopwords:
            return None
        return plural_stem(token) if self.stemming else token

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON settings, stored with an index."""
        return {"stemming": self.stemming, "min_length": self.min_length, "stopwords": sorted(self.stopwords)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Tokenizer:
        """Rebuild from :meth:`to_dict`; raises ValueError naming a bad field."""
        stemming, min_length, stopwords = data.get("stemming"), data.get("min_length"), data.get("stopwords")
        if not isinstance(stemming, bool):
            raise ValueError(f"tokenizer 'stemming' must be true or false, got {stemming!r}")
        if isinstance(min_length, bool) or not isinstance(min_length, int) or min_length < 1:
            raise ValueError(f"tokenizer 'min_length' must be a whole number >= 1, got {min_length!r}")
        if not isinstance(stopwords, list) or not all(isinstance(w, str) for w in stopwords):
            raise ValueError("tokenizer 'stopwords' must be a list of strings")
        return cls(stemming=stemming, min_length=min_length, stopwords=frozenset(stopwords))



class TermMemo(dict[str, str]):
    """Token -> term ("" for a dropped token), filled on first sight of each token."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        super().__init__()
        self._tokenizer = tokenizer

    def __missing__(self, token: str) -> str:
        term = self[token] = self._tokenizer.term(token) or ""
        return term
