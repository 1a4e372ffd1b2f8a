"""Every error code answers the same HTTP status and body whoever raises it.

For each code of recsys.errors.ERRORS, the error is raised (a) inside the real
``recommend`` actor, run by a Dramatiq worker on a StubBroker, and the API answers
the error result that the worker stored; and (b) inside an API resource. Both
replies must be the same: status, title, description, code, Retry-After.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dramatiq
import falcon
import pytest

from recsys.config import Settings
from recsys.errors import ERRORS, RecsysError, WaitTimeout
from recsys_workers.app import WorkerApp
from tests.support.fake_api import TOKEN, FakeApi
from tests.unit.api import conftest as api_fixtures
from tests.unit.workers.conftest import make_app

# The API unit tests' harness (the app on a StubBroker), as fixtures of this module too.
make_harness = api_fixtures.make_harness
harness = api_fixtures.harness

#: The status of every code, pinned: a change here is a change of the API.
STATUS = {
    "bad_request": 400,
    "invalid_archive": 400,
    "unknown_publication": 404,
    "unknown_file": 404,
    "unknown_change": 404,
    "not_newer": 409,
    "no_previous_version": 409,
    "missing_files": 409,
    "quality_gate": 409,
    "build_running": 409,
    "build_lock_lost": 409,
    "upload_refused": 409,
    "apply_refused": 409,
    "too_large": 413,
    "internal": 500,
    "config": 500,
    "source": 500,
    "invalid_record": 500,
    "invalid_target": 500,
    "no_engine": 503,
    "engine_not_found": 503,
    "engine_load": 503,
    "incompatible_engine": 503,
    "unavailable": 503,
    "feature_unavailable": 503,
    "store": 503,
    "lock_timeout": 503,
    "timeout": 504,
    "wait_timeout": 504,
}

TEXT = {"text": "Dark matter halos around dwarf galaxies.", "k": 3}


def sample(code: str) -> RecsysError:
    if code == "wait_timeout":
        return WaitTimeout("3f1c0d9e-task", 7)
    return ERRORS[code](f"the {code} sample failed on item 'x-1'; do what the docs say")


@pytest.fixture(scope="module")
def worker_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerApp]:
    tmp: Path = tmp_path_factory.mktemp("worker")
    settings = Settings(data_dir=tmp / "machine", api_url="http://api.test", api_token=TOKEN, engine="stub",
                        catchup_interval=3600, request_timeout=30)
    app = make_app(settings, FakeApi())
    app.broker.emit_after("process_boot")
    worker = dramatiq.Worker(app.broker, worker_threads=1, worker_timeout=100)
    worker.start()
    yield app
    worker.stop()
    app.close()


def worker_result(app: WorkerApp, monkeypatch: pytest.MonkeyPatch, exc: BaseException) -> Any:
    """The result the real ``recommend`` actor stores when its body raises ``exc``."""
    def body(request: Any) -> Any:
        raise exc

    monkeypatch.setattr("recsys_workers.actors.recommend.recommend_body", body)
    message = app.actors.recommend.send(TEXT)
    return message.get_result(backend=app.results, block=True, timeout=30_000)


class Raiser:
    """An API resource that raises the error it is given."""

    def __init__(self) -> None:
        self.error: BaseException = RuntimeError("unset")

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        raise self.error


def raised_in_the_api(harness: Any, exc: BaseException) -> Any:
    raiser = Raiser()
    raiser.error = exc
    harness.app.add_route("/v1/raise", raiser)
    return harness.client.simulate_get("/v1/raise")


def answered_from_a_result(harness: Any, result: Any) -> Any:
    harness.actors.recommend = lambda request: result
    return harness.client.simulate_post("/v1/recommendations", json=TEXT)


def reply(response: Any) -> tuple[int, dict[str, Any], str | None]:
    body = response.json
    assert {"title", "description", "code"} <= set(body), body
    return response.status_code, {k: body[k] for k in ("title", "description", "code")}, \
        response.headers.get("retry-after")


def test_the_table_has_the_pinned_statuses():
    assert {code: cls.status for code, cls in ERRORS.items()} == STATUS


@pytest.mark.parametrize("code", sorted(ERRORS))
def test_an_error_raised_in_a_worker_or_in_the_api_gets_the_same_reply(code, worker_app, harness, monkeypatch):
    # Given the error of this code
    error = sample(code)
    # When a worker's recommend raises it, and the API answers the stored result
    result = worker_result(worker_app, monkeypatch, error)
    assert result == {"error": {"code": code, "message": error.message}}
    from_worker = reply(answered_from_a_result(harness, result))
    # And when an API resource raises it
    from_api = reply(raised_in_the_api(harness, error))
    # Then both replies are the same, with the code's status and title
    assert from_worker == from_api
    status, body, retry_after = from_api
    assert status == STATUS[code]
    assert body["title"] == ERRORS[code].title and body["code"] == code
    assert error.message in body["description"]
    assert (retry_after is not None) == (status == 503)


@pytest.mark.parametrize("code", ["engine_not_found", "store", "lock_timeout"])
def test_the_three_codes_that_disagreed_are_503_with_retry_after_in_both_paths(code, worker_app, harness,
                                                                              monkeypatch):
    error = sample(code)
    for response in (answered_from_a_result(harness, worker_result(worker_app, monkeypatch, error)),
                     raised_in_the_api(harness, error)):
        assert response.status_code == 503
        assert response.headers["retry-after"] == "5"


def test_an_unexpected_exception_is_internal_in_both_paths(worker_app, harness, monkeypatch):
    result = worker_result(worker_app, monkeypatch, ZeroDivisionError("engine bug"))
    assert result["error"]["code"] == "internal"
    assert "ZeroDivisionError: engine bug" in result["error"]["message"]
    from_worker = answered_from_a_result(harness, result)
    from_api = raised_in_the_api(harness, ZeroDivisionError("resource bug"))
    for response in (from_worker, from_api):
        assert response.status_code == 500
        assert (response.json["title"], response.json["code"]) == ("Internal error", "internal")
    assert "resource bug" not in from_api.json["description"]  # the API's own traceback stays in its log


def test_a_code_from_a_newer_worker_is_a_500_that_keeps_the_code(harness):
    response = answered_from_a_result(harness, {"error": {"code": "quota_exceeded", "message": "over quota"}})
    assert response.status_code == 500
    assert response.json == {"title": "Internal error", "description": "over quota", "code": "quota_exceeded"}


@pytest.mark.parametrize(("error", "level"), [
    (ERRORS["config"]("RECSYS_X is malformed"), logging.ERROR),  # a 500: a fault on our side
    (ERRORS["store"]("cannot read state.json"), logging.ERROR),  # the disk needs an operator
    (ERRORS["lock_timeout"]("the store's lock was held 30 s"), logging.ERROR),
    (ERRORS["unavailable"]("Redis is unreachable"), logging.WARNING),
    (ERRORS["no_engine"]("nothing built yet"), None),  # an answer, not a fault
    (ERRORS["not_newer"]("not newer"), None),
])
def test_the_api_logs_each_class_as_its_handler_says(harness, caplog, error, level):
    with caplog.at_level(logging.INFO, logger="recsys_api"):
        raised_in_the_api(harness, error)
    logged = [r.levelno for r in caplog.records if error.message in r.getMessage()]
    assert logged == ([] if level is None else [level])
