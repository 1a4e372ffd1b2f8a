"""The bundled demo corpus: the default source for first runs, demos and tests."""

from __future__ import annotations

import json
import re
from collections import Counter
from importlib import resources

import pytest

from recsys.domain import Publication
from recsys.sources import DemoSource, load_publications, open_source
from recsys.text import split_sentences

RESOURCE = "data/demo_publications.jsonl"


@pytest.fixture(scope="module")
def lines() -> list[str]:
    raw = resources.files("recsys").joinpath(RESOURCE).read_bytes()
    text = raw.decode("utf-8")  # strict: the file must be UTF-8
    assert text.endswith("\n")
    return text.splitlines()


@pytest.fixture(scope="module")
def publications() -> list[Publication]:
    return load_publications(DemoSource())


def test_every_line_is_one_compact_json_record_sorted_by_id(lines: list[str]) -> None:
    records = [json.loads(line) for line in lines]
    for line, record in zip(lines, records, strict=True):
        assert line == json.dumps(record, ensure_ascii=False, separators=(",", ":"))
        assert set(record) == {"id", "title", "abstract", "label", "year", "authors", "url"}
        assert re.fullmatch(r"demo-\d{4}", record["id"])
        assert record["url"] is None
    ids = [r["id"] for r in records]
    assert ids == sorted(ids)


def test_every_record_is_valid_and_unique(lines: list[str], publications: list[Publication]) -> None:
    assert len(publications) == len(lines) >= 240
    assert len({p.id for p in publications}) == len(publications)
    assert len({p.title.casefold() for p in publications}) == len(publications)
    assert len({p.abstract for p in publications}) == len(publications)


def test_topics_are_many_and_balanced(publications: list[Publication]) -> None:
    labels = Counter(p.label for p in publications)
    assert None not in labels
    assert len(labels) >= 10
    assert min(labels.values()) >= 15, labels
    assert all(re.fullmatch(r"[a-z]+(?:-[a-z]+)*", str(label)) for label in labels)


def test_abstracts_have_three_to_six_sentences(publications: list[Publication]) -> None:
    wrong = {p.id: len(split_sentences(p.abstract)) for p in publications}
    wrong = {pid: n for pid, n in wrong.items() if not 3 <= n <= 6}
    assert not wrong


def test_years_and_authors_are_plausible(publications: list[Publication]) -> None:
    assert all(p.year is not None and 2012 <= p.year <= 2025 for p in publications)
    assert all(2 <= len(p.authors) <= 5 and len(set(p.authors)) == len(p.authors) for p in publications)
    assert len({p.year for p in publications}) >= 10


def test_the_demo_corpus_is_the_default_source(publications: list[Publication]) -> None:
    default = load_publications(open_source(None))

    assert [p.to_dict() for p in default] == [p.to_dict() for p in publications]
