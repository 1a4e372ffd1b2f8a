"""Engine and strict-engine tasks (EngineMiddleware) and recommend's results."""

from __future__ import annotations

import logging

import dramatiq
import pytest

from recsys.testing import StubEngine
from recsys_workers.errors import InvalidEngineOption
from recsys_workers.middleware import EngineMiddleware, task_engine
from tests.unit.workers.conftest import run

QUERY = {"text": "Dark matter halos around dwarf galaxies and star formation in spiral arms.", "k": 3}


def test_a_plain_task_prepares_no_engine(app, worker):
    # Given a plain actor (no engine option) that looks for a prepared engine
    @dramatiq.actor(broker=app.broker, store_results=True, max_retries=0)
    def plain():
        try:
            task_engine()
        except RuntimeError as exc:
            return str(exc)
        return "an engine was prepared"

    # When it runs, then no engine was prepared and the store was never opened
    assert "no engine was prepared" in run(app, plain)
    assert app.services.loaded() is None
    assert not app.services.store_opened


def test_an_engine_task_pulls_the_apis_engine_when_the_machine_has_none(app, worker, fake_api, archives):
    stored = fake_api.publish(archives())
    result = run(app, app.actors.recommend, QUERY)
    assert result["engine"] == {"name": "stub", "version": stored.version, "generation": 1}
    assert 1 <= len(result["recommendations"]) <= 3
    assert fake_api.pulls == 1
    # A second task uses what is installed and loaded: no other download
    run(app, app.actors.recommend, QUERY)
    assert fake_api.pulls == 1


def test_with_no_engine_anywhere_the_task_answers_no_engine_at_once(app, worker):
    result = run(app, app.actors.recommend, QUERY)
    assert result["error"]["code"] == "no_engine"
    assert "build" in result["error"]["message"]


def test_an_engine_task_serves_the_machines_engine_and_asks_for_a_catch_up(app, worker, fake_api, archives):
    # Given a machine at generation 1 and an API at generation 2
    fake_api.publish(archives())
    run(app, app.actors.recommend, QUERY)
    fake_api.publish(archives())
    # When a non-strict task says the API has generation 2
    result = run(app, app.actors.recommend, dict(QUERY, min_generation=2))
    # Then it is answered by generation 1 now, and a catch-up is requested
    assert result["engine"]["generation"] == 1
    assert app.services.catch_up_requested.is_set()
    assert fake_api.pulls == 1


def test_a_strict_task_pulls_the_generation_it_needs_first(app, worker, fake_api, archives):
    fake_api.publish(archives())
    run(app, app.actors.recommend, QUERY)
    second = fake_api.publish(archives())
    result = run(app, app.actors.recommend, dict(QUERY, min_generation=2, strict=True))
    assert result["engine"] == {"name": "stub", "version": second.version, "generation": 2}
    assert fake_api.pulls == 2


def test_a_strict_task_fails_clearly_when_the_api_lacks_the_generation(app, worker, fake_api, archives):
    fake_api.publish(archives())
    result = run(app, app.actors.recommend, dict(QUERY, min_generation=5, strict=True))
    assert result["error"]["code"] == "no_engine"
    assert "generation 5" in result["error"]["message"]


@pytest.mark.parametrize(
    ("request_body", "code"),
    [
        ({"text": "   ", "k": 3}, "bad_request"),
        ({"text": "x", "k": 0}, "bad_request"),
        ({"publication_id": "no-such-id", "k": 3}, "unknown_publication"),
        (["not", "an", "object"], "bad_request"),
    ],
)
def test_bad_requests_become_error_results_with_their_code(app, worker, fake_api, archives, request_body, code):
    fake_api.publish(archives())
    result = run(app, app.actors.recommend, request_body)
    assert result["error"]["code"] == code
    assert result["error"]["message"]


def test_an_unexpected_crash_is_an_internal_error_result_and_is_logged(app, worker, fake_api, archives,
                                                                       monkeypatch, caplog):
    fake_api.publish(archives())

    def explode(self, query):
        raise ZeroDivisionError("engine bug")

    monkeypatch.setattr(StubEngine, "recommend", explode)
    with caplog.at_level(logging.ERROR, logger="recsys_workers"):
        result = run(app, app.actors.recommend, QUERY)
    assert result["error"]["code"] == "internal"
    assert "ZeroDivisionError: engine bug" in result["error"]["message"]
    assert any(r.exc_info and "engine bug" in str(r.exc_info[1]) for r in caplog.records)


def test_an_unexpected_failure_while_preparing_reaches_the_actor(app, worker, fake_api, archives, monkeypatch):
    fake_api.publish(archives())

    def broken(*args, **kwargs):
        raise OSError("disk on fire")

    monkeypatch.setattr("recsys_workers.middleware.prepare_engine", broken)
    result = run(app, app.actors.recommend, QUERY)
    assert result["error"]["code"] == "internal"
    assert "disk on fire" in result["error"]["message"]


def test_recommend_is_never_retried(app):
    assert app.actors.recommend.options["max_retries"] == 0
    assert app.actors.recommend.options["store_results"] is True
    assert app.actors.recommend.options["time_limit"] == app.settings.request_timeout * 1000


def test_an_unknown_engine_option_is_refused_when_the_actor_is_declared(app):
    assert any(isinstance(m, EngineMiddleware) for m in app.broker.middleware)
    with pytest.raises(InvalidEngineOption, match="engine='sometimes'"):
        dramatiq.actor(lambda: None, broker=app.broker, actor_name="odd", engine="sometimes")


def test_a_time_limit_striking_while_the_engine_is_pulled_is_a_timeout_result(app, worker, fake_api, archives,
                                                                              monkeypatch):
    from dramatiq.middleware.time_limit import TimeLimitExceeded

    fake_api.publish(archives())

    def interrupted(*args, **kwargs):
        raise TimeLimitExceeded()

    monkeypatch.setattr(app.services.rollout, "pull_current", interrupted)
    result = run(app, app.actors.recommend, QUERY)
    assert result["error"]["code"] == "timeout"


def test_a_batch_answers_each_query_in_order_with_its_own_errors(app, worker, fake_api, archives):
    # Given the API's engine, and a batch with good queries, an API-found error, and two bad ones
    stored = fake_api.publish(archives())
    api_error = {"error": {"code": "bad_request", "message": "'k' must be a whole number", "field": "k"}}
    queries = [QUERY, api_error, {"publication_id": "no-such-id"}, {"text": "   "},
               {**QUERY, "offset": 1, "k": 2}]

    # When the batch task runs
    result = run(app, app.actors.recommend_batch, {"queries": queries, "min_generation": None})

    # Then every item is answered in order, errors in their place
    assert result["engine"] == {"name": "stub", "version": stored.version, "generation": 1}
    items = result["results"]
    assert len(items) == 5
    single = run(app, app.actors.recommend, QUERY)["recommendations"]
    assert items[0] == {"recommendations": single}
    assert items[1] == api_error
    assert items[2]["error"]["code"] == "unknown_publication"
    assert items[3]["error"]["code"] == "bad_request"
    assert items[4] == {"recommendations": single[1:3]}


def test_a_batch_without_an_engine_fails_as_a_whole(app, worker):
    result = run(app, app.actors.recommend_batch, {"queries": [QUERY]})
    assert result["error"]["code"] == "no_engine"
