"""deploy/gunicorn.conf.py: gthread sized for waits, timeouts from the settings, metrics hooks."""

from __future__ import annotations

import os
import runpy
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

CONF = Path(__file__).resolve().parents[3] / "deploy" / "gunicorn.conf.py"


def load(monkeypatch, **env):
    for key in [k for k in os.environ if k.startswith("RECSYS_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(CONF.parent)  # no .env there
    return runpy.run_path(str(CONF))


def test_defaults_are_gthread_2_by_16_on_every_interface(monkeypatch):
    conf = load(monkeypatch)

    assert conf["worker_class"] == "recsys_api.gunicorn_worker.ThreadWorker"
    assert (conf["workers"], conf["threads"]) == (2, 16)
    assert conf["bind"] == ["0.0.0.0:8000"]
    assert conf["preload_app"] is False
    assert conf["errorlog"] == "-"


@pytest.mark.parametrize("seconds", [1, 30, 120])
def test_timeouts_leave_room_for_the_longest_wait(monkeypatch, seconds):
    conf = load(monkeypatch, RECSYS_REQUEST_TIMEOUT=str(seconds))

    assert conf["graceful_timeout"] > seconds
    assert conf["timeout"] > seconds


def test_gunicorn_cmd_args_override_the_file(monkeypatch):
    from gunicorn.app.wsgiapp import WSGIApplication

    monkeypatch.setenv("GUNICORN_CMD_ARGS", "--bind 127.0.0.1:9000 --threads 4")
    monkeypatch.setattr(sys, "argv", ["gunicorn", "-c", str(CONF), "recsys_api.wsgi:app"])

    config = WSGIApplication().cfg  # reads the command line, the file, then GUNICORN_CMD_ARGS

    assert config.bind == ["127.0.0.1:9000"]
    assert config.threads == 4
    assert config.workers == 2
    assert config.worker_class_str == "recsys_api.gunicorn_worker.ThreadWorker"


def test_metrics_hooks_empty_the_folder_at_start_and_drop_dead_workers(monkeypatch, tmp_path):
    conf = load(monkeypatch)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    (tmp_path / "counter_12.db").write_bytes(b"x")
    (tmp_path / "gauge_livesum_34.db").write_bytes(b"x")
    (tmp_path / "keep.txt").write_text("not ours")

    conf["on_starting"](None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]

    (tmp_path / "gauge_livesum_34.db").write_bytes(b"x")
    (tmp_path / "counter_34.db").write_bytes(b"x")
    conf["child_exit"](None, SimpleNamespace(pid=34))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["counter_34.db", "keep.txt"]


def test_the_start_step_runs_once_in_the_master_and_a_bad_start_archive_stops_gunicorn(monkeypatch, tmp_path):
    from recsys.errors import ConfigError
    from recsys_api import startup

    conf = load(monkeypatch, RECSYS_BROKER_URL="amqp://guest:guest@127.0.0.1:5672/%2F")
    server = SimpleNamespace(log=SimpleNamespace(info=lambda *args: calls.append(("log",) + args)))
    calls: list[tuple[object, ...]] = []

    # Given a start step that succeeds
    monkeypatch.setattr(startup, "run_start_step", lambda settings: calls.append(("run", settings)) or "present")
    conf["when_ready"](server)
    assert [c[0] for c in calls] == ["run", "log"]
    assert calls[1][-1] == "present"

    # Given one that refuses the start archive: gunicorn gets a RuntimeError (its one-line "Error: ...")
    def refuse(settings):
        raise ConfigError("RECSYS_START_ENGINE='/x.zip' does not exist; fix the path or unset it")

    monkeypatch.setattr(startup, "run_start_step", refuse)
    with pytest.raises(RuntimeError, match="the API cannot start: RECSYS_START_ENGINE='/x.zip' does not exist"):
        conf["when_ready"](server)
