"""recsys_workers.errors.attempt: the one try/except of the actors, and what recommend
answers when the engine it needs cannot be installed."""

from __future__ import annotations

import logging

import dramatiq
import pytest
from dramatiq.middleware.time_limit import TimeLimitExceeded

from recsys.errors import BuildBusy, InternalError, NoEngine, RecsysError, TaskTimeout, UnknownPublication
from recsys_workers.errors import InvalidEngineOption, attempt
from tests.unit.workers.conftest import run

log = logging.getLogger("recsys_workers.test")
HOW = {"logger": log, "failed": "job 7 failed", "what": "the job", "limit": "9 s (RECSYS_JOB_LIMIT)"}


def fails_with(exc: BaseException):
    def body():
        raise exc

    return body


def test_a_value_is_returned_as_it_is():
    assert attempt(lambda: {"ok": 1}, **HOW) == {"ok": 1}


def test_a_recsys_error_is_returned_and_logged_once_with_its_code(caplog):
    error = NoEngine("nothing built yet")
    with caplog.at_level(logging.INFO, logger="recsys_workers"):
        outcome = attempt(fails_with(error), **HOW, consequence="; nothing changed")
    assert outcome is error
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.ERROR, "job 7 failed (no_engine): nothing built yet; nothing changed")
    ]


@pytest.mark.parametrize(("error", "level"), [
    (BuildBusy("a build runs on m1"), logging.INFO),  # expected: an answer
    (UnknownPublication("no 'p9'"), logging.WARNING),
])
def test_expected_errors_are_logged_at_info_the_others_at_the_level_given(caplog, error, level):
    with caplog.at_level(logging.INFO, logger="recsys_workers"):
        attempt(fails_with(error), **HOW, level=logging.WARNING, expected=(BuildBusy,))
    assert [r.levelno for r in caplog.records] == [level]


def test_the_time_limit_is_a_timeout_naming_the_limit(caplog):
    # TimeLimitExceeded is no Exception: a plain `except Exception` would let it through
    assert not issubclass(TimeLimitExceeded, Exception)
    with caplog.at_level(logging.INFO, logger="recsys_workers"):
        outcome = attempt(fails_with(TimeLimitExceeded()), **HOW, level=logging.INFO)
    assert isinstance(outcome, TaskTimeout) and outcome.code == "timeout"
    assert outcome.message == "the job took longer than 9 s (RECSYS_JOB_LIMIT) and was stopped"
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.WARNING, "job 7 failed: it ran longer than 9 s (RECSYS_JOB_LIMIT) and was stopped")
    ]


def test_anything_else_is_internal_naming_it_and_logged_with_its_traceback(caplog):
    with caplog.at_level(logging.INFO, logger="recsys_workers"):
        outcome = attempt(fails_with(KeyError("shard")), **HOW)
    assert isinstance(outcome, InternalError) and outcome.code == "internal"
    assert "the job failed unexpectedly (KeyError: 'shard')" in outcome.message
    (record,) = caplog.records
    assert record.getMessage() == "job 7 failed: unexpected KeyError: 'shard'" and record.exc_info is not None
    assert isinstance(record.exc_info[1], KeyError)


def test_recommend_answers_engine_load_when_the_engine_it_downloads_fails_its_checks(app, worker, fake_api,
                                                                                     archives):
    # Given a machine with no engine, and an API that serves a damaged file
    stored = fake_api.publish(archives())
    for sha in stored.files.values():
        fake_api.corrupt[sha] = fake_api.blobs[sha][:-10]
    # When a recommendation needs it
    result = run(app, app.actors.recommend, {"text": "Dark matter halos.", "k": 3})
    # Then the worker's failure is engine_load (503), not the client's invalid_archive (400)
    assert result["error"]["code"] == "engine_load"
    assert "could not install the API's current engine" in result["error"]["message"]
    assert app.services.store.current() is None


def test_an_actor_declared_with_a_bad_engine_option_raises_a_recsys_error(app):
    with pytest.raises(InvalidEngineOption) as raised:
        dramatiq.actor(lambda: None, broker=app.broker, actor_name="odd2", engine="maybe")
    assert isinstance(raised.value, RecsysError) and raised.value.code == "internal"
    assert "engine='maybe'" in raised.value.message and str(raised.value) == raised.value.message
