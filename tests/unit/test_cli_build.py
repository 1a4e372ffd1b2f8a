"""`recsys build --previous [--thin]` and `recsys verify [--thin]`: incremental local builds."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from recsys.archive import MANIFEST_NAME, verify
from recsys.cli.main import main
from recsys.errors import InvalidArchive


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    from recsys.sources import DemoSource, load_publications

    records = [p.to_dict() for p in load_publications(DemoSource())]
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_an_incremental_thin_build_carries_only_what_the_previous_archive_lacks(tmp_path, corpus, capsys,
                                                                               monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["-q", "build", "--engine", "lexical", "--source", str(corpus), "--out", "first.zip"]) == 0
    capsys.readouterr()
    assert main(["-q", "build", "--engine", "lexical", "--source", str(corpus), "--out", "thin.zip",
                 "--previous", "first.zip", "--thin"]) == 0
    out = capsys.readouterr().out
    assert "unchanged files:" in out and "left out of the thin archive" in out
    first, thin = verify(tmp_path / "first.zip"), tmp_path / "thin.zip"
    with zipfile.ZipFile(thin) as z:
        carried = set(z.namelist()) - {MANIFEST_NAME}
    held = {e.sha256 for e in first.manifest.files}
    checked = verify(thin, have=lambda e: e.sha256 in held)
    assert checked.members == carried
    assert all(e.sha256 not in held for e in checked.manifest.files if e.path in carried)
    assert sum(e.size for e in checked.manifest.files if e.path in carried) < first.manifest.total_size / 2
    with pytest.raises(InvalidArchive, match="thin archive"):
        verify(thin)

    assert main(["verify", str(thin), "--thin"]) == 0
    summary = capsys.readouterr().out
    assert "OK (thin)" in summary and "identity    manifest sha256" in summary and "carried" in summary


def test_thin_needs_a_previous_archive(tmp_path, corpus, capsys):
    assert main(["build", "--engine", "lexical", "--source", str(corpus), "--out", str(tmp_path / "x.zip"),
                 "--thin"]) != 0
    assert "--thin needs --previous" in capsys.readouterr().err
