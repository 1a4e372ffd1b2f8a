"""`recsys push`: batches of 1,000, JSON Lines (gzip too), --wait's outcome, clear errors."""

from __future__ import annotations

import gzip
import io
import json

import httpx
import pytest

from recsys.cli import push as cli_push
from recsys.cli.main import main


class FakePushApi:
    def __init__(self, final: str = "applied") -> None:
        self.bodies: list[dict] = []
        self.final = final

    def handler(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and request.url.path == "/v1/publications":
            assert request.headers["authorization"] == "Bearer tok"
            self.bodies.append(json.loads(request.content))
            n = len(self.bodies)
            return httpx.Response(202, json={"change_id": n, "status": "pending",
                                             "status_url": f"/v1/publications/changes/{n}"})
        if request.method == "GET" and request.url.path.startswith("/v1/publications/changes/"):
            n = int(request.url.path.rsplit("/", 1)[1])
            return httpx.Response(200, json={"change_id": n, "status": self.final, "generation": 7,
                                             "reason": "rolled back" if self.final != "applied" else None})
        return httpx.Response(404, json={"title": "Not Found", "description": "no route"})


@pytest.fixture
def api(monkeypatch):
    fake = FakePushApi()
    real = httpx.Client

    def client(**kwargs):
        return real(transport=httpx.MockTransport(fake.handler), **kwargs)

    monkeypatch.setattr(cli_push.httpx, "Client", client)
    monkeypatch.setenv("RECSYS_API_URL", "http://api.test")
    monkeypatch.setenv("RECSYS_API_TOKEN", "tok")
    return fake


def records(n: int) -> list[dict]:
    return [{"id": f"p{i}", "title": f"Title {i}", "abstract": "Text."} for i in range(n)]


def test_a_large_file_goes_in_batches_of_1000_and_deletes_with_it(api, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "new.jsonl.gz"
    path.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in records(2500)).encode()))
    assert main(["-q", "push", str(path), "--delete", "old-1", "old-2"]) == 0
    assert [len(b["upsert"]) for b in api.bodies] == [1000, 1000, 500]
    assert [b["delete"] for b in api.bodies] == [["old-1", "old-2"], [], []]
    assert capsys.readouterr().out.count(": pending (http://api.test/v1/publications/changes/") == 3


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
def test_standard_input_takes_json_lines_or_a_json_array(api, tmp_path, monkeypatch, compress):
    monkeypatch.chdir(tmp_path)
    for text in ["".join(json.dumps(r) + "\n" for r in records(3)), json.dumps(records(3))]:
        data = gzip.compress(text.encode()) if compress else text.encode()
        monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BufferedReader(io.BytesIO(data))))
        assert main(["-q", "push", "-"]) == 0
    assert [[u["id"] for u in b["upsert"]] for b in api.bodies] == [["p0", "p1", "p2"]] * 2


def test_a_record_that_is_no_object_is_refused_before_anything_is_sent(api, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a"}\n[1, 2]\n')
    assert main(["-q", "push", str(bad)]) == 6
    assert "bad.jsonl, line 2: a publication must be a JSON object" in capsys.readouterr().err
    assert api.bodies == []


def test_wait_reports_the_outcome(api, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["-q", "push", "--delete", "x", "--wait"]) == 0
    assert "change 1: applied by engine generation 7" in capsys.readouterr().out
    api.final = "rolled_back"
    assert main(["-q", "push", "--delete", "y", "--wait"]) == 1
    assert "change 2: rolled_back" in capsys.readouterr().err


def test_errors_are_clear(api, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["-q", "push"]) == 1
    assert "nothing to push" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a"}\nnot json\n')
    assert main(["-q", "push", str(bad)]) == 6  # a source-class error: the file's record
    assert "bad.jsonl, line 2: not valid JSON" in capsys.readouterr().err
    monkeypatch.delenv("RECSYS_API_TOKEN")
    assert main(["-q", "push", "--delete", "x"]) == 4
    assert "RECSYS_API_TOKEN" in capsys.readouterr().err
