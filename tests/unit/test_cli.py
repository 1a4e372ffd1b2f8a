"""The ``recsys`` command line: global flags anywhere, progress counts, evidence lines."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from recsys.cli.local import _evidence_line, _print_human
from recsys.cli.main import build_parser
from recsys.engine import LogProgress
from recsys.sources import FileSource, load_publications


def subcommands() -> list[str]:
    parser = build_parser()
    (commands,) = (a for a in parser._actions if a.dest == "command")
    return sorted(commands.choices)


#: The least each subcommand needs to parse.
REQUIRED = {"build": ["--out", "x.zip"], "verify": ["x.zip"], "recommend": ["--archive", "x.zip"]}


@pytest.mark.parametrize("command", subcommands())
def test_the_global_flags_are_accepted_after_every_subcommand(command):
    parser = build_parser()
    rest = REQUIRED.get(command, [])

    before = parser.parse_args(["-q", command, *rest])
    after = parser.parse_args([command, *rest, "-q"])
    verbose = parser.parse_args([command, "-vv", *rest])
    neither = parser.parse_args([command, *rest])

    assert before.quiet and after.quiet
    assert (verbose.verbose, verbose.quiet) == (2, False)
    assert (neither.verbose, neither.quiet) == (0, False)


def test_a_flag_before_the_subcommand_is_kept_when_none_follows_it():
    args = build_parser().parse_args(["-v", "build", "--out", "x.zip"])

    assert (args.verbose, args.quiet) == (1, False)


def test_the_fetch_progress_logs_the_final_count(tmp_path: Path, caplog):
    # Given a source of 252 records and a progress log throttled to one line per hour
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(
        json.dumps({"id": f"p{i}", "title": f"Paper {i}", "abstract": f"Sentence number {i} of the corpus."}) + "\n"
        for i in range(252)
    ))
    logger = logging.getLogger("test.progress")
    progress = LogProgress(logger, interval=3600.0, units={"fetch": "records"})

    # When every record is read
    with caplog.at_level(logging.INFO, logger="test.progress"):
        publications = load_publications(FileSource(path), progress)

    # Then the last line says all 252, not the first record's count
    lines = [r.getMessage() for r in caplog.records if r.name == "test.progress"]
    assert len(publications) == 252
    assert lines[0].startswith("fetch: 1 records")
    assert lines[-1].startswith("fetch: 252/252 records (100.0%)")


def test_an_evidence_line_shows_the_query_sentence_it_matched():
    line = _evidence_line({"query_sentence": "Dark matter halos.", "sentence": "Halos of dark matter.", "score": 0.83})

    assert line == "0.830  “Dark matter halos.” → “Halos of dark matter.”"


def test_two_query_sentences_matching_one_stored_sentence_are_told_apart(capsys):
    result = {"recommendations": [{
        "publication_id": "p1", "title": "Halos", "score": 0.8, "label": "astro", "year": 2020,
        "evidence": [
            {"query_sentence": "Dark matter halos.", "sentence": "Halos of dark matter.", "score": 0.83},
            {"query_sentence": "Dwarf galaxies.", "sentence": "Halos of dark matter.", "score": 0.41},
        ],
    }]}

    _print_human({"text": "Dark matter halos. Dwarf galaxies."}, result)

    out = capsys.readouterr().out
    assert "0.830  “Dark matter halos.” → “Halos of dark matter.”" in out
    assert "0.410  “Dwarf galaxies.” → “Halos of dark matter.”" in out


def test_an_evidence_line_without_a_query_sentence_shows_the_match_alone():
    assert _evidence_line({"sentence": "Halos.", "score": 0.5}) == "0.500  “Halos.”"


def test_recsys_build_with_q_after_the_subcommand_builds(tmp_path: Path, monkeypatch, capsys):
    from recsys.cli.main import main
    from tests.support.engines import publications

    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(p.to_dict()) + "\n" for p in publications(12)))
    monkeypatch.chdir(tmp_path)

    code = main(["build", "--engine", "lexical", "--source", str(corpus), "--out", "engine.zip", "-q"])

    assert code == 0, capsys.readouterr().err
    assert (tmp_path / "engine.zip").is_file()
    assert "wrote engine.zip" in capsys.readouterr().out
    assert main(["verify", "engine.zip", "-q"]) == 0
