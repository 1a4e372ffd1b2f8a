"""``recsys serve``: the whole service in one process, for a first run and demos.

Runs :class:`~recsys.cli.embedded.EmbeddedServer` (the HTTP API, a Dramatiq worker on
an in-process broker, and the scheduler of ``RECSYS_REBUILD_CRON``) until SIGINT
(Ctrl-C) or SIGTERM, then stops it and exits 0; a second signal exits at once.

On stdout it prints the URL and /docs, the API token of the run (generated unless
``RECSYS_API_TOKEN`` is set) and the engine: the one on disk, or the one being built.
On first start with an empty ``RECSYS_DATA_DIR`` the API's start step sends
``build_index``: the worker fetches ``RECSYS_SOURCE`` (default: the bundled demo
corpus), builds ``RECSYS_ENGINE`` (default: annoy), logs its progress on stderr and
uploads the archive to this same server over loopback; the command then prints how
the build ended. With ``RECSYS_BROKER_URL`` set it refuses (exit status 4) and prints
the commands of the distributed stack.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from typing import Any, TextIO

from recsys.cli.embedded import DISTRIBUTED_COMMANDS, EmbeddedServer, refusal
from recsys.config import Settings

__all__ = ["DISTRIBUTED_COMMANDS", "EmbeddedServer", "refusal", "run"]

RET_OK = 0
#: Exit code of a second SIGINT/SIGTERM during shutdown (128 + SIGINT, like a shell).
RET_FORCED = 130


def _source_name(settings: Settings) -> str:
    return settings.source or "the bundled demo corpus"


def _report_start(server: EmbeddedServer, out: TextIO) -> None:
    settings = server.settings
    url = server.url
    print(f"recsys serve: listening on {url}  (API docs: {url}/docs)", file=out)
    if server.host in ("", "0.0.0.0", "::"):
        print(f"  reachable on every network interface ({server.host or '0.0.0.0'}:{server.port})", file=out)
    if server.token_generated:
        print(f"  API token for this run: {settings.api_token}", file=out)
        print("  (set RECSYS_API_TOKEN to choose one; builds, uploads and rollbacks need it)", file=out)
    outcome = server.start_outcome
    current = server.archives.current()
    if current is not None and outcome.what in ("present", "installed"):
        print(f"  engine: {current.manifest.engine} version {current.version} (generation {current.generation})",
              file=out)
    elif outcome.task_id is not None:
        print(f"  engine: none yet; building {settings.engine!r} from {_source_name(settings)} "
              f"(task {outcome.task_id}); progress is logged below, and recommendations answer 503 "
              "until it is ready", file=out)
    else:
        print(f"  engine: none yet, and no build was started ({outcome.what}); "
              f"start one with POST {url}/v1/engine/builds", file=out)
    print("  press Ctrl-C to stop", file=out, flush=True)


def _follow_build(server: EmbeddedServer, task_id: str, stop: threading.Event, out: TextIO) -> None:
    """Print how the first build ended."""
    from recsys import protocol

    started = time.monotonic()
    result = server.wait_for_build(task_id, server.settings.build_time_limit + 60.0, stop)
    if result is None:
        return
    error = protocol.error_of(result)
    if error is not None:
        print(f"recsys serve: the engine build failed ({error.get('code')}): {error.get('message')}\n"
              f"  fix the cause, then start a build: curl -X POST -H 'Authorization: Bearer <token>' "
              f"{server.url}/v1/engine/builds", file=out, flush=True)
        return
    engine = result.get("engine", {}) if isinstance(result, dict) else {}
    print(f"recsys serve: engine ready after {time.monotonic() - started:.0f} s: {engine.get('name')} "
          f"version {engine.get('version')} ({result.get('publications')} publications, "
          f"{result.get('sentences')} sentences)\n"
          f"  try: curl -s {server.url}/v1/recommendations -H 'Content-Type: application/json' "
          "-d '{\"text\": \"graph neural networks for molecules\", \"k\": 3}'", file=out, flush=True)


def run(args: argparse.Namespace, *, out: TextIO | None = None) -> int:
    """The ``serve`` command: run until SIGINT or SIGTERM; returns the exit code."""
    out = out if out is not None else sys.stdout
    server = EmbeddedServer(Settings.from_env(), host=args.host, port=args.port, threads=args.threads,
                            worker_threads=args.worker_threads)
    stop = threading.Event()
    signals = 0

    def on_signal(signum: int, frame: Any) -> None:
        nonlocal signals
        signals += 1
        if signals > 1:
            print("recsys serve: second signal, exiting without waiting", file=sys.stderr, flush=True)
            os._exit(RET_FORCED)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.start()
        _report_start(server, out)
        task_id = server.start_outcome.task_id
        if task_id is not None:
            threading.Thread(target=_follow_build, args=(server, task_id, stop, out), name="build-report",
                             daemon=True).start()
        # Wake up now and then: the kernel may deliver SIGINT/SIGTERM to another thread,
        # and Python only runs the handler when the main thread gets to run bytecode.
        while not stop.wait(0.5):
            pass
        print("recsys serve: stopping", file=out, flush=True)
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print("recsys serve: stopped", file=out, flush=True)
    return RET_OK
