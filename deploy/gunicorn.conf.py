"""Gunicorn settings of the recsys API: ``gunicorn -c deploy/gunicorn.conf.py recsys_api.wsgi:app``.

* gthread: each request waiting for a recommendation holds a thread (a blocking
  Redis pop, no polling), so threads are sized for concurrent waits: 2 processes x 16
  threads by default on a 2-core machine; raise threads, not processes, for more
  concurrent waiters (each thread also holds one RabbitMQ connection).
* Timeouts follow RECSYS_REQUEST_TIMEOUT: a graceful stop lets in-flight waits finish.
* Logs go to the standard streams (gunicorn's own log on stderr; no access log by
  default, as it costs CPU on every request: add ``--access-logfile -`` to enable it).
* The start-engine step (install RECSYS_START_ENGINE, or send the first build of a
  fresh stack) runs once, in the master, before any worker is forked (``when_ready``);
  a bad start archive stops gunicorn with a one-line error.
* Prometheus: when PROMETHEUS_MULTIPROC_DIR is set, the folder is emptied at start and
  a dead worker's live gauges are removed, so /metrics sums every worker process.

Everything here can be overridden without changing the command line, through
gunicorn's own ``GUNICORN_CMD_ARGS`` (e.g. ``--bind 127.0.0.1:9000 --workers 4``), which
gunicorn applies over this file.
"""

import glob
import os

from recsys.config import Settings

_settings = Settings.from_env()

wsgi_app = "recsys_api.wsgi:app"
bind = ["0.0.0.0:8000"]
# gthread, whose listening sockets close as soon as the master is gone (so a restarted
# master binds at once while orphaned workers finish their requests).
worker_class = "recsys_api.gunicorn_worker.ThreadWorker"
workers = 2
threads = 16
# gthread workers heartbeat from their main loop, so a long wait does not trip this;
# it only catches a worker process that is stuck as a whole.
timeout = max(30, _settings.request_timeout + 10)
graceful_timeout = _settings.request_timeout + 5
keepalive = 5
# Bound the request line and headers (bodies are bounded by the app).
limit_request_line = 8190
limit_request_fields = 100
# The app is built in each worker after the fork: RabbitMQ/Redis connections are never shared.
preload_app = False
errorlog = "-"
accesslog = None
loglevel = _settings.log_level
capture_output = False
proc_name = "recsys-api"


def on_starting(server):
    """Empty PROMETHEUS_MULTIPROC_DIR: values left by a previous run would be summed in."""
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        os.makedirs(folder, exist_ok=True)
        for path in glob.glob(os.path.join(folder, "*.db")):
            os.remove(path)


def when_ready(server):
    """The start-engine step, once per deployment (recsys_api.startup.run_start_step)."""
    from recsys.errors import RecsysError
    from recsys_api.app import configure_logging
    from recsys_api.startup import run_start_step

    configure_logging(_settings.log_level)
    try:
        outcome = run_start_step(_settings)
    except RecsysError as exc:
        # gunicorn prints a RuntimeError as one "Error: ..." line and exits with status 1.
        raise RuntimeError(f"the API cannot start: {exc.message}") from exc
    server.log.info("start-engine step: %s", outcome)


def child_exit(server, worker):
    """Drop a dead worker's live gauges (e.g. waits in flight) from the shared metrics."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
