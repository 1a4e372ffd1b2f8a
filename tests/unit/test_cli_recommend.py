"""``recsys recommend``: like/unlike, diversity, min-score, offset and --batch, from an archive and from an API."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from recsys.cli.embedded import EmbeddedServer
from recsys.cli.main import main
from recsys.config import Settings
from recsys.testing import sample_publications


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cli-recommend")
    corpus = folder / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(p.to_dict()) + "\n" for p in sample_publications()), encoding="utf-8")
    assert main(["-q", "build", "--engine", "lexical", "--source", str(corpus), "--out",
                 str(folder / "engine.zip")]) == 0
    return folder


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[dict]]:
    capsys.readouterr()
    code = main(["-q", "recommend", *args, "--json"])
    lines = capsys.readouterr().out.splitlines()
    return code, [json.loads(line) for line in lines]


def ids(result: dict) -> list[str]:
    return [r["publication_id"] for r in result["recommendations"]]


def check_the_new_flags(capsys: pytest.CaptureFixture[str], where: list[str], workdir: Path) -> None:
    text = "pulsars seen by a radio telescope"
    code, [whole] = run(capsys, *where, text, "-k", "6")
    assert code == 0 and len(ids(whole)) >= 4
    _, [page] = run(capsys, *where, text, "-k", "2", "--offset", "2")
    assert ids(page) == ids(whole)[2:4]
    cut = whole["recommendations"][1]["score"]
    _, [kept] = run(capsys, *where, text, "--min-score", str(cut))
    assert all(r["score"] >= cut for r in kept["recommendations"]) and ids(kept)
    _, [diverse] = run(capsys, *where, text, "-k", "6", "--diversity", "0.5")
    assert ids(diverse)[0] == ids(whole)[0]
    first = ids(whole)[0]
    _, [liked] = run(capsys, *where, "--like-id", first, "--like-text", text, "--unlike-id", ids(whole)[1])
    assert first not in ids(liked) and ids(whole)[1] not in ids(liked) and ids(liked)

    batch = workdir / "queries.jsonl"
    batch.write_text(json.dumps({"text": text, "k": 2}) + "\n\n" + json.dumps({"publication_id": "no-such"}) + "\n"
                     + json.dumps({"text": text, "k": 0}) + "\n" + json.dumps({"like": [{"publication_id": first}]})
                     + "\n", encoding="utf-8")
    code, answers = run(capsys, *where, "--batch", str(batch))
    assert code == 7  # some queries failed
    assert len(answers) == 4
    assert ids(answers[0]) == ids(whole)[:2]
    assert answers[1]["error"]["code"] == "unknown_publication"
    assert answers[2]["error"]["code"] == "bad_request"
    assert first not in ids(answers[3])


def test_the_new_flags_from_an_archive(capsys: pytest.CaptureFixture[str], workdir: Path) -> None:
    check_the_new_flags(capsys, ["--archive", str(workdir / "engine.zip")], workdir)


@pytest.fixture
def server(tmp_path: Path, workdir: Path) -> Iterator[EmbeddedServer]:
    settings = Settings(data_dir=tmp_path / "data", engine="lexical", source=str(workdir / "corpus.jsonl"))
    server = EmbeddedServer(settings, port=0, threads=4, worker_threads=2)
    try:
        server.start()
        outcome = server.start_outcome
        assert outcome.task_id
        result = server.wait_for_build(outcome.task_id, timeout=120)
        assert result is not None and "error" not in result, result
        yield server
    finally:
        server.stop()


def test_the_new_flags_against_the_api(capsys: pytest.CaptureFixture[str], workdir: Path,
                                       server: EmbeddedServer) -> None:
    check_the_new_flags(capsys, ["--api", server.url], workdir)


def test_a_bad_batch_file_is_a_query_error(capsys: pytest.CaptureFixture[str], workdir: Path) -> None:
    bad = workdir / "bad.jsonl"
    bad.write_text('{"text": "a"}\nnot json\n', encoding="utf-8")
    assert main(["-q", "recommend", "--archive", str(workdir / "engine.zip"), "--batch", str(bad)]) == 7
    assert "line 2: not JSON" in capsys.readouterr().err


def test_the_human_output_numbers_ranks_from_the_offset(capsys: pytest.CaptureFixture[str], workdir: Path) -> None:
    capsys.readouterr()
    assert main(["-q", "recommend", "--archive", str(workdir / "engine.zip"), "radio telescope", "-k", "1",
                 "--offset", "3"]) == 0
    assert "\n  4. " in capsys.readouterr().out
