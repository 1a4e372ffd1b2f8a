"""Sentence splitting: abbreviations, numbers, URLs, line breaks, long runs."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys.text import MAX_SENTENCE_CHARS, split_sentences

# Text that must stay ONE sentence: a period, "?" or ellipsis inside it is no boundary.
NO_BREAK = {
    "e.g.": "Several encoders, e.g. BERT and RoBERTa, were tested on the corpus.",
    "e.g. lowercase": "Some tasks, e.g. summarisation, need long contexts.",
    "e.g. in brackets": "Prior methods (e.g. Smith's method) fail here.",
    "i.e.": "The model is calibrated, i.e. its confidence matches its accuracy.",
    "i.e. capital": "The error is bounded, i.e. Theorem 2 applies to every case.",
    "et al. lowercase": "As Smith et al. showed in a large trial, the effect is small.",
    "et al. year": "Garcia et al. (2021) reported the same trend.",
    "et al. citation": "This follows Lee et al. [12] closely.",
    "et al. possessive": "We reuse Kim et al.'s protocol for the ablation.",
    "etc. mid-sentence": "Proteins, lipids, sugars, etc. were measured in every sample.",
    "Fig.": "As Fig. 3 shows, the error decreases with depth.",
    "Figs.": "Figs. 2-4 compare the three baselines.",
    "Eq.": "Minimising Eq. (5) yields the update rule.",
    "Sec.": "Details are given in Sec. 4 of the supplement.",
    "Tab.": "Tab. 1 lists every hyperparameter.",
    "Fig. roman": "We prove it in Sec. IV under mild assumptions.",
    "vs.": "Accuracy was 91% vs. 84% for the baseline.",
    "vs. capital": "We compare CNN vs. Transformer encoders.",
    "cf.": "The bound is tight, cf. Smith and Jones for a proof.",
    "approx.": "Training took approx. 12 hours on one GPU.",
    "resp.": "Recall and precision rose to 0.8 and 0.9 (resp.) on the test set.",
    "Dr.": "Dr. Alvarez led the field campaign.",
    "Prof.": "The survey was designed by Prof. Okafor and her students.",
    "Mr.": "Mr. Smith donated the samples to the museum.",
    "No.": "Sample No. 5 was contaminated.",
    "U.S. before a name": "The U.S. Geological Survey provided the data.",
    "Ph.D.": "She holds a Ph.D. from a small university.",
    "decimals": "The constant 3.14 and a 0.5% error rate were reported.",
    "version": "We used release v2.1.0 of the toolkit and Python 3.11.7 throughout.",
    "initials": "J. R. R. Tolkien wrote the book.",
    "initials at start": "A. Smith and B. Jones wrote the first proof.",
    "dotted initials": "The theory of L.A. Zadeh underlies fuzzy logic.",
    "URL": "The code is at https://example.org/a.b?c=d and is free.",
    "URL with fragment": "See http://example.com/index.html#sec2.1 for more.",
    "email": "Write to first.last@example.ac.uk for the data.",
    "DOI": "The data set is archived as 10.1000/xyz.123 in a public repository.",
    "ellipsis lowercase": "We tried one, two... and finally ten seeds.",
    "ellipsis unicode": "We tried one, two… and finally ten seeds.",
    "ellipsis bracket": "The interview went on [...] for a long time.",
    "month": "The survey ran from Jan. 2020 to Mar. 2021 in four regions.",
    "std.": "The mean F1 was 0.89 (std. 0.07) over five runs.",
    "milliseconds before lowercase": "Latency was 234 ms. on average across all requests.",
    "question mark then number": "They competed in CheckThat! 2025 and ranked third.",
    "page": "The lemma is on p. 5 of the appendix.",
}

# Text that must split exactly into these sentences.
SPLITS = {
    "simple": ("We propose a model. It works well.", ["We propose a model.", "It works well."]),
    "question": ("Does it scale? We test it.", ["Does it scale?", "We test it."]),
    "exclamation": ("It scales! We test it.", ["It scales!", "We test it."]),
    "closing quote": ('They called it "robust." Then it failed.', ['They called it "robust."', "Then it failed."]),
    "closing paren": ("It held (see above.) Then it broke.", ["It held (see above.)", "Then it broke."]),
    "sentence in brackets": ("We stop. (This is final.) Next.", ["We stop.", "(This is final.)", "Next."]),
    "after citation": ("It works (Lee, 2020). We agree.", ["It works (Lee, 2020).", "We agree."]),
    "after a number": ("Results are in Table 2. The model wins.", ["Results are in Table 2.", "The model wins."]),
    "after a URL": (
        "Code: https://example.org/x. Data are public.",
        ["Code: https://example.org/x.", "Data are public."],
    ),
    "after a decimal": ("The score was 3.5. It improved.", ["The score was 3.5.", "It improved."]),
    "et al. ends one": (
        "This was shown by Smith et al. We extend it.",
        ["This was shown by Smith et al.", "We extend it."],
    ),
    "etc. ends one": (
        "We used rice, wheat, etc. Each crop was irrigated.",
        ["We used rice, wheat, etc.", "Each crop was irrigated."],
    ),
    # The hard case: an acronym ends the sentence. We split before a common sentence
    # opener ("The", "We", "However", ...), and keep going before other capitalised
    # words ("U.S. Congress").
    "U.S. ends one": (
        "Most sites were in the U.S. The rest were in Canada.",
        ["Most sites were in the U.S.", "The rest were in Canada."],
    ),
    "initial ends one": (
        "The best strain was type A. We sequenced it.",
        ["The best strain was type A.", "We sequenced it."],
    ),
    "ellipsis ends one": ("It failed... Then it worked.", ["It failed...", "Then it worked."]),
    "numbered list": (
        "Steps: 1. Collect data. 2. Train the model. 3. Evaluate it.",
        ["Steps: 1. Collect data.", "2. Train the model.", "3. Evaluate it."],
    ),
    "lettered list": (
        "Two aims: a. Measure it. b. Explain it.",
        ["Two aims: a. Measure it.", "b. Explain it."],
    ),
    "no. ends one": ("The answer was no. The end.", ["The answer was no.", "The end."]),
    "unit letter after a number": (
        "Sensitivity is about 3.4 K. Leave-one-out tests agree.",
        ["Sensitivity is about 3.4 K.", "Leave-one-out tests agree."],
    ),
    "ms is not Ms.": ("Latency was 80 ms. Throughput doubled.", ["Latency was 80 ms.", "Throughput doubled."]),
    "whitespace": ("  One  sentence\there.\n\n\nAnother   one.  ", ["One sentence here.", "Another one."]),
    "heading line": (
        "Introduction\nWe study splitting.\nIt matters.",
        ["Introduction", "We study splitting.", "It matters."],
    ),
    "heading after paragraph": (
        "First part ends here.\nMaterials and Methods\nSamples were frozen.",
        ["First part ends here.", "Materials and Methods", "Samples were frozen."],
    ),
    "paragraph break": ("A title without a period\n\nThe abstract.", ["A title without a period", "The abstract."]),
    "hard-wrapped text": (
        "We study the problem of\nsentence splitting in\nScientific Text by Smith et\nal. and others.",
        ["We study the problem of sentence splitting in Scientific Text by Smith et al. and others."],
    ),
    "bullets": (
        "We propose:\n- a splitter\n- a corpus\n- tests",
        ["We propose:", "- a splitter", "- a corpus", "- tests"],
    ),
    "numbered lines": (
        "Contributions:\n1) a splitter\n2) a corpus",
        ["Contributions:", "1) a splitter", "2) a corpus"],
    ),
}


@pytest.mark.parametrize("text", NO_BREAK.values(), ids=NO_BREAK.keys())
def test_does_not_break_inside(text: str) -> None:
    assert split_sentences(text) == [text]


@pytest.mark.parametrize("case", NO_BREAK.keys())
def test_does_not_break_inside_with_neighbours(case: str) -> None:
    text = NO_BREAK[case]
    assert split_sentences(f"We begin here. {text} We end here.") == ["We begin here.", text, "We end here."]


@pytest.mark.parametrize(("text", "expected"), SPLITS.values(), ids=SPLITS.keys())
def test_splits(text: str, expected: list[str]) -> None:
    assert split_sentences(text) == expected


def test_empty_and_blank_text_give_no_sentence() -> None:
    assert split_sentences("") == []
    assert split_sentences(" \n\t\n ") == []


def test_a_long_run_without_punctuation_is_cut_at_spaces() -> None:
    words = [f"w{i}" for i in range(3000)]
    text = " ".join(words)  # about 17,000 characters
    chunks = split_sentences(text)
    assert len(chunks) > 1
    assert all(len(c) <= MAX_SENTENCE_CHARS for c in chunks)
    assert " ".join(chunks).split() == words  # cut only at spaces, nothing lost
    assert min(map(len, chunks)) > MAX_SENTENCE_CHARS // 2  # balanced: no tiny tail


def test_a_single_huge_word_is_cut_into_bounded_pieces() -> None:
    blob = "x" * 10_000
    chunks = split_sentences(f"Data: {blob} end.")
    assert all(len(c) <= MAX_SENTENCE_CHARS for c in chunks)
    assert "".join(chunks).replace(" ", "") == f"Data:{blob}end."


SPLITTER_PIECES = [*'aB3 .?!\n"()-:;…', "e.g.", "U.S.", "et al.", "Fig.", " The", "\n\n", "1.", "- "]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(SPLITTER_PIECES)).map("".join))
def test_property_no_character_lost_and_no_empty_sentence_on_splitter_alphabet(text: str) -> None:
    _check_invariants(text)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_property_no_character_lost_and_no_empty_sentence_on_any_text(text: str) -> None:
    _check_invariants(text)


def _check_invariants(text: str) -> None:
    sentences = split_sentences(text)
    assert "".join("".join(s.split()) for s in sentences) == "".join(text.split())
    for sentence in sentences:
        assert sentence
        assert sentence == " ".join(sentence.split())  # normalised whitespace
        assert len(sentence) <= MAX_SENTENCE_CHARS
