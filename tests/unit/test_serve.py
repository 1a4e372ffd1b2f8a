"""``recsys serve``: the embedded one-process server, in this process (no services).

The server runs on a free port with the lexical engine over the small sample corpus;
the real command (signals, exit codes, console output) is tested in
tests/e2e/test_serve.py.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from recsys.cli.embedded import DISTRIBUTED_COMMANDS, CronThread, EmbeddedServer, loopback_url, refusal
from recsys.cli.main import main
from recsys.config import Settings
from recsys.errors import ConfigError, RecsysError
from recsys.testing import sample_publications

ROOT = Path(__file__).resolve().parents[2]
BROKER = "amqp://guest:guest@127.0.0.1:5672/%2F"


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps(p.to_dict()) + "\n" for p in sample_publications()), encoding="utf-8")
    return path


def embedded_settings(tmp_path: Path, corpus: Path, **changes: Any) -> Settings:
    return Settings(data_dir=tmp_path / "data", engine="lexical", source=str(corpus), **changes)


@pytest.fixture
def server(tmp_path: Path, corpus: Path) -> Iterator[EmbeddedServer]:
    server = EmbeddedServer(embedded_settings(tmp_path, corpus), port=0, threads=4, worker_threads=2)
    try:
        server.start()
        yield server
    finally:
        server.stop()


# -- refusing the distributed mode ----------------------------------------------


def test_refuses_when_a_broker_is_configured() -> None:
    with pytest.raises(ConfigError) as caught:
        EmbeddedServer(Settings(broker_url=BROKER))
    message = caught.value.message
    assert "RECSYS_BROKER_URL is set" in message
    for _, command in DISTRIBUTED_COMMANDS:
        assert command in message
    assert "docker compose -f deploy/compose.yml up" in message


def test_the_command_refuses_with_exit_code_4(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)  # no ./.env
    monkeypatch.setenv("RECSYS_BROKER_URL", BROKER)
    assert main(["serve", "--port", "0"]) == 4
    assert "gunicorn -c deploy/gunicorn.conf.py recsys_api.wsgi:app" in capsys.readouterr().err


def test_the_refusal_names_the_commands_of_compose() -> None:
    services = yaml.safe_load((ROOT / "deploy" / "compose.yml").read_text(encoding="utf-8"))["services"]
    commands = dict(DISTRIBUTED_COMMANDS)
    assert commands["API"] == " ".join(services["api"]["command"])
    assert commands["worker pool"] == " ".join(services["worker"]["command"])
    assert commands["scheduler"] == " ".join(services["scheduler"]["command"])
    assert refusal(Settings(broker_url=BROKER)).count("\n") >= len(DISTRIBUTED_COMMANDS)


@pytest.mark.parametrize(("port", "threads", "worker_threads"), [(-1, 1, 1), (65536, 1, 1), (0, 0, 1), (0, 1, 0)])
def test_bad_arguments_are_refused(port: int, threads: int, worker_threads: int) -> None:
    with pytest.raises(ConfigError):
        EmbeddedServer(Settings(), port=port, threads=threads, worker_threads=worker_threads)


def test_a_busy_port_says_so(tmp_path: Path, corpus: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = EmbeddedServer(embedded_settings(tmp_path, corpus), port=port)
        with pytest.raises(RecsysError, match=f"cannot listen on 127.0.0.1:{port}.*--port"):
            server.start()
        server.stop()


@pytest.mark.parametrize(("host", "url"), [
    ("127.0.0.1", "http://127.0.0.1:8000"), ("0.0.0.0", "http://127.0.0.1:8000"), ("", "http://127.0.0.1:8000"),
    ("::", "http://[::1]:8000"), ("::1", "http://[::1]:8000"), ("example.org", "http://example.org:8000"),
])
def test_the_worker_reaches_the_api_over_loopback(host: str, url: str) -> None:
    assert loopback_url(host, 8000) == url


# -- the embedded server ----------------------------------------------------------


def test_first_start_builds_an_engine_and_serves_the_api(server: EmbeddedServer) -> None:
    # Given an empty data dir, the start step sent build_index.
    outcome = server.start_outcome
    assert outcome.what == "build sent" and outcome.task_id
    # When the build ends (uploaded to the API over loopback with the generated token)...
    result = server.wait_for_build(outcome.task_id, timeout=120)
    assert result is not None and "error" not in result, result
    assert result["engine"]["name"] == "lexical" and result["publications"] == len(sample_publications())
    assert server.token_generated and server.settings.api_token
    with httpx.Client(base_url=server.url, timeout=30) as http:
        # ...the API serves recommendations, and the worker is shown on the new engine.
        answer = http.post("/v1/recommendations", json={"text": "pulsars seen by a radio telescope", "k": 3})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["engine"]["version"] == result["engine"]["version"]
        assert body["recommendations"][0]["publication_id"] == "astro-04"
        workers = http.get("/v1/workers").json()
        assert workers["converged"] and len(workers["workers"]) == 1
        assert http.get("/docs").status_code == 200
        assert http.get("/health").status_code == 200


def test_async_requests_and_polling(server: EmbeddedServer) -> None:
    assert server.start_outcome.task_id is not None
    server.wait_for_build(server.start_outcome.task_id, timeout=120)
    with httpx.Client(base_url=server.url, timeout=30) as http:
        accepted = http.post("/v1/recommendations", json={"publication_id": "gen-01", "k": 2},
                             headers={"Prefer": "respond-async"})
        assert accepted.status_code == 202, accepted.text
        status_url = accepted.json()["status_url"]
        deadline = time.monotonic() + 30
        while (task := http.get(status_url).json())["status"] == "pending":
            assert time.monotonic() < deadline, "the task stayed pending"
            time.sleep(0.05)
        assert task["status"] == "succeeded"
        assert len(task["result"]["recommendations"]) == 2


def _settled_count(server: EmbeddedServer, expected: int) -> int:
    """The results kept, once those replaced to expire at once (1 ms) are gone."""
    deadline = time.monotonic() + 5
    while (count := len(server.results)) != expected and time.monotonic() < deadline:
        time.sleep(0.01)
    return count


def test_results_of_answered_requests_are_dropped_at_once(server: EmbeddedServer) -> None:
    assert server.start_outcome.task_id is not None
    server.wait_for_build(server.start_outcome.task_id, timeout=120)
    kept = len(server.results)  # the build's result: its id was printed, it can be asked for
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for _ in range(20):
            assert http.post("/v1/recommendations", json={"text": "dark matter halos"}).status_code == 200
        # Nobody can ask for those results again (a 200 shows no task id): none is kept.
        assert _settled_count(server, kept) == kept
        # An async task's result is kept for polling.
        accepted = http.post("/v1/recommendations", json={"text": "dark matter halos"},
                             headers={"Prefer": "respond-async"})
        assert accepted.status_code == 202
        assert _settled_count(server, kept + 1) == kept + 1
        assert http.get(accepted.json()["status_url"]).json()["status"] == "succeeded"


def test_the_token_of_the_run_guards_builds(server: EmbeddedServer) -> None:
    assert server.start_outcome.task_id is not None
    server.wait_for_build(server.start_outcome.task_id, timeout=120)
    with httpx.Client(base_url=server.url, timeout=30) as http:
        assert http.post("/v1/engine/builds", headers={"Authorization": "Bearer wrong"}).status_code == 401
        started = http.post("/v1/engine/builds", headers={"Authorization": f"Bearer {server.settings.api_token}"})
        assert started.status_code == 202, started.text
        result = server.wait_for_build(started.json()["task_id"], timeout=120)
        assert result is not None and result["engine"]["generation"] == 2


def test_a_configured_token_is_used(tmp_path: Path, corpus: Path) -> None:
    server = EmbeddedServer(embedded_settings(tmp_path, corpus, api_token="chosen"), port=0)
    assert not server.token_generated and server.settings.api_token == "chosen"


def test_a_second_start_serves_the_engine_on_disk(tmp_path: Path, corpus: Path) -> None:
    settings = embedded_settings(tmp_path, corpus)
    first = EmbeddedServer(settings, port=0)
    try:
        task_id = first.start().task_id
        assert task_id is not None and first.wait_for_build(task_id, timeout=120) is not None
    finally:
        first.stop()
    second = EmbeddedServer(settings, port=0)
    try:
        assert second.start().what == "present"
        with httpx.Client(base_url=second.url, timeout=30) as http:
            answer = http.post("/v1/recommendations", json={"text": "robot arms that grasp objects"})
            assert answer.status_code == 200, answer.text
    finally:
        second.stop()


def test_stop_closes_the_port(tmp_path: Path, corpus: Path) -> None:
    server = EmbeddedServer(embedded_settings(tmp_path, corpus), port=0)
    task_id = server.start().task_id
    assert task_id is not None and server.wait_for_build(task_id, timeout=120) is not None
    port = server.port
    server.stop()
    server.stop()  # twice is fine
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


# -- the scheduler thread ---------------------------------------------------------


class EverySecond:
    """A stand-in for periodiq's CronSpec that ticks every 0.2 s."""

    def next_valid_date(self, last: Any) -> Any:
        return last.add(seconds=0.2)


def test_the_cron_thread_sends_each_tick_with_its_time() -> None:
    sent: list[str] = []
    ticked = threading.Event()

    def send(**options: Any) -> None:
        sent.append(options["scheduled_at"])
        if len(sent) >= 2:
            ticked.set()

    thread = CronThread(EverySecond(), send)
    thread.start()
    try:
        assert ticked.wait(10), "no tick within 10 s"
    finally:
        thread.stop()
    assert not thread.is_alive()
    assert len(set(sent)) == len(sent), "each tick is sent once, with its own time"


def test_the_cron_thread_uses_periodiqs_cron_rules() -> None:
    import pendulum
    from periodiq import cron

    thread = CronThread(cron("0 3 * * *"), lambda **options: None)
    tick = thread.next_tick()
    assert (tick.hour, tick.minute) == (3, 0) and tick > pendulum.now()


def test_a_cron_setting_starts_the_scheduler(tmp_path: Path, corpus: Path) -> None:
    server = EmbeddedServer(embedded_settings(tmp_path, corpus, rebuild_cron="0 3 * * *"), port=0)
    try:
        task_id = server.start().task_id
        assert server._scheduler is not None and server._scheduler.is_alive()
        assert task_id is not None and server.wait_for_build(task_id, timeout=120) is not None
    finally:
        server.stop()
    assert server._scheduler is None
