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
* Memory: each worker sets glibc's allocator to 2 arenas and a fixed 128 KiB mmap
  threshold before its threads start (``post_fork``), so the large buffers of request
  bodies go back to the system when freed instead of piling up in 16 threads' arenas;
  MALLOC_ARENA_MAX or MALLOC_MMAP_THRESHOLD_ in the environment win (docs/operations.md,
  "Memory").

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


#: glibc's allocator in each worker (mallopt(3)), unless the environment sets the variable:
#: (environment variable, mallopt parameter, value). Bad requests do not leak, but with 16
#: threads glibc makes up to 16 arenas (8 per core), and a freed buffer larger than the
#: mmap threshold raises the threshold to its size: the 1 MiB buffers a body is read
#: through (gunicorn's reader, the drain of a refused body) then come from the arenas and
#: stay there. A storm of 1,400 bad requests grew the API by 18 % and kept growing
#: (benchmarks/_storm.py). Two arenas cost nothing under the GIL; a fixed threshold sends
#: every buffer of 128 KiB or more to mmap, returned to the system when it is freed.
MALLOC_OPTIONS = (
    ("MALLOC_ARENA_MAX", -8, 2),  # M_ARENA_MAX
    ("MALLOC_MMAP_THRESHOLD_", -3, 128 * 1024),  # M_MMAP_THRESHOLD (fixed: no dynamic raise)
)


def tune_malloc(environ=os.environ):
    """Apply MALLOC_OPTIONS with mallopt(3); the names of those applied. A C library
    without mallopt (or one that refuses, as musl's does) is left as it is."""
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return []
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return [f"{name}={value}" for name, param, value in MALLOC_OPTIONS
            if name not in environ and mallopt(param, value) == 1]


def post_fork(server, worker):
    """In the new worker, before the app is loaded and its threads start."""
    applied = tune_malloc()
    if applied:
        worker.log.debug("allocator: %s", ", ".join(applied))


def child_exit(server, worker):
    """Drop a dead worker's live gauges (e.g. waits in flight) from the shared metrics."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
