"""``recsys serve`` as a user runs it: a real process, its console, its signals."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import httpx
import pytest

from tests.e2e import compose
from tests.e2e.serve import ServeProcess, write_sample_corpus

pytestmark = pytest.mark.e2e


def lexical(folder: Path) -> dict[str, str]:
    return {"RECSYS_ENGINE": "lexical", "RECSYS_SOURCE": str(write_sample_corpus(folder / "corpus.jsonl"))}


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_serves_then_stops_cleanly_on_a_signal(tmp_path: Path, signum: int) -> None:
    server = ServeProcess(tmp_path, lexical(tmp_path)).start()
    try:
        server.wait_ready(timeout=120)
        output = server.text()
        # It says where it listens, the docs, the token of this run and the engine it built.
        assert f"listening on {server.url}  (API docs: {server.url}/docs)" in output
        token = re.search(r"API token for this run: (\S+)", output)
        assert token, output
        assert "building 'lexical' from" in output
        assert re.search(r"engine ready after \d+ s: lexical version \S+ \(20 publications", output)

        answer = httpx.post(f"{server.url}/v1/recommendations", json={"text": "radio telescope pulsars"}, timeout=30)
        assert answer.status_code == 200, answer.text
        builds = httpx.post(f"{server.url}/v1/engine/builds", headers={"Authorization": f"Bearer {token[1]}"},
                            timeout=30)
        assert builds.status_code == 202, builds.text

        # When signalled (Ctrl-C is SIGINT), it stops its server and worker and exits 0.
        server.signal(signum)
        assert server.popen is not None and server.popen.wait(30) == 0, server.tail()
        assert server.text().rstrip().endswith("recsys serve: stopped")
    finally:
        server.kill9()


def test_refuses_a_distributed_configuration(tmp_path: Path) -> None:
    server = ServeProcess(tmp_path, {"RECSYS_BROKER_URL": "amqp://guest:guest@127.0.0.1:5672/%2F"}).start()
    try:
        assert server.popen is not None and server.popen.wait(60) == 4
        output = server.text()
        # It names the commands of deploy/compose.yml, and compose itself.
        for service in ("api", "worker", "scheduler"):
            assert " ".join(compose.command(service)) in output
        assert "docker compose -f deploy/compose.yml up" in output
    finally:
        server.kill9()
