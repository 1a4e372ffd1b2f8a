"""Scheduled rebuilds: one build per tick whatever the number of schedulers, none
while a build runs; the scheduler idles when no cron is set."""

from __future__ import annotations

import pytest
from periodiq import CronSpec

from recsys.cluster import BuildLock
from recsys_workers.schedule import SCHEDULED_BUILD_ACTOR, handle_tick, running_under_periodiq, tick_key
from tests.unit.workers.conftest import make_app


def build_messages(app):
    return app.broker.queues[app.settings.build_queue].qsize()


def test_two_schedulers_sending_one_tick_give_one_build(app):
    # Two schedulers in different time zones send the same tick
    first = handle_tick(app.services, app.actors.build_index, "2026-03-01T03:00:00+00:00")
    second = handle_tick(app.services, app.actors.build_index, "2026-03-01T04:00:00.400000+01:00")
    assert first is not None and second is None
    assert build_messages(app) == 1
    assert app.services.build_lock.queued() == first


def test_a_tick_while_a_build_runs_is_skipped(app):
    BuildLock(app.services.kv, 60).acquire(host="builder", message_id="running")
    assert handle_tick(app.services, app.actors.build_index, "2026-03-01T03:00:00+00:00") is None
    assert build_messages(app) == 0


def test_a_tick_while_a_build_is_queued_is_skipped(app):
    app.services.build_lock.mark_queued("sent-by-the-api")
    assert handle_tick(app.services, app.actors.build_index, "2026-03-01T03:00:00+00:00") is None
    assert build_messages(app) == 0


def test_each_tick_can_build(app, worker, fake_api):
    # The next tick, once the first tick's build is done, builds again
    assert handle_tick(app.services, app.actors.build_index, "2026-03-01T03:00:00+00:00")
    app.broker.join(app.settings.build_queue, timeout=30_000)
    assert handle_tick(app.services, app.actors.build_index, "2026-03-01T03:01:00+00:00")
    app.broker.join(app.settings.build_queue, timeout=30_000)
    assert fake_api.uploads == 2


def test_a_scheduled_build_is_recorded_as_a_task(app):
    sent = handle_tick(app.services, app.actors.build_index, "2026-03-01T03:00:00+00:00")
    record = app.services.kv.get(f"recsys:task:{sent}")
    assert record is not None and '"build_index"' in record


def test_tick_keys_are_the_utc_minute():
    assert tick_key("2026-03-01T03:00:00+00:00") == "2026-03-01T03:00Z"
    assert tick_key("2026-03-01T04:00:59.5+01:00") == "2026-03-01T03:00Z"
    assert tick_key("2026-03-01T03:00:00") == "2026-03-01T03:00Z"
    assert tick_key("not a date") == "not a date"


def test_the_cron_makes_the_actor_periodic(settings, fake_api):
    app = make_app(settings.replace(rebuild_cron="30 3 * * *"), fake_api)
    spec = app.actors.scheduled_build.options["periodic"]
    assert isinstance(spec, CronSpec) and str(spec) == "30 3 * * *"
    assert app.actors.scheduled_build.actor_name == SCHEDULED_BUILD_ACTOR


def test_without_a_cron_the_actor_is_not_periodic(app):
    assert "periodic" not in app.actors.scheduled_build.options


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["/venv/bin/periodiq", "recsys_workers"], True),
        (["/venv/lib/python3.11/site-packages/periodiq/__init__.py", "recsys_workers"], True),
        (["/venv/bin/dramatiq", "recsys_workers"], False),
        (["/venv/bin/gunicorn"], False),
        ([], False),
    ],
)
def test_the_periodiq_command_is_recognised(argv, expected):
    assert running_under_periodiq(argv) is expected
