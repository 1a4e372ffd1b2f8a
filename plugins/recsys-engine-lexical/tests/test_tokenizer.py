"""The lexical engine's tokenizer."""

from __future__ import annotations

import pytest

from recsys_engine_lexical.tokenizer import STOPWORDS, Tokenizer, plural_stem


def test_lowercases_and_drops_stopwords_digits_and_single_letters():
    assert Tokenizer()("The 3D Model of a Galaxy, in 2024 (x).") == ["3d", "model", "galaxy"]


def test_is_unicode_aware():
    # NFKC turns the "fi" ligature into two letters; casefold turns ß into ss.
    assert Tokenizer(stemming=False)("Éclairage ﬁne-tuning Straße über") == [
        "éclairage", "fine", "tuning", "strasse", "über",
    ]


@pytest.mark.parametrize(
    ("word", "stem"),
    [
        ("studies", "study"), ("images", "image"), ("models", "model"), ("galaxies", "galaxy"),
        ("class", "class"), ("corpus", "corpus"), ("bees", "bee"), ("status", "status"), ("gas", "gas"),
    ],
)
def test_plural_stem_folds_plurals_only(word, stem):
    assert plural_stem(word) == stem


def test_stemming_can_be_turned_off():
    assert Tokenizer(stemming=True)("robots grasp objects") == ["robot", "grasp", "object"]
    assert Tokenizer(stemming=False)("robots grasp objects") == ["robots", "grasp", "objects"]


def test_memo_gives_the_same_terms():
    tokenizer = Tokenizer()
    memo = tokenizer.memo()
    text = "Robots and the robots' hands: robots grasp 42 objects."
    assert tokenizer(text, memo) == tokenizer(text) == ["robot", "robot", "hand", "robot", "grasp", "object"]
    assert memo["the"] == "" and memo["robots"] == "robot"


def test_settings_round_trip_and_bad_settings_are_named():
    tokenizer = Tokenizer(stemming=False, min_length=3, stopwords=frozenset({"foo"}))
    assert Tokenizer.from_dict(tokenizer.to_dict()) == tokenizer
    assert Tokenizer.from_dict(Tokenizer().to_dict()).stopwords == STOPWORDS
    with pytest.raises(ValueError, match="'stemming'"):
        Tokenizer.from_dict({"stemming": "yes", "min_length": 2, "stopwords": []})
    with pytest.raises(ValueError, match="'min_length'"):
        Tokenizer.from_dict({"stemming": True, "min_length": 0, "stopwords": []})
    with pytest.raises(ValueError, match="'stopwords'"):
        Tokenizer.from_dict({"stemming": True, "min_length": 2, "stopwords": "a b"})
