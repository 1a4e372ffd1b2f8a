"""Child processes for the worker-metrics test (importable by a spawned interpreter).

Each child is one "worker process" of a pool: its WorkerMetricsMiddleware writes to the
pool's folder (prometheus-client's multiprocess mode), runs ``tasks`` recommend
messages through the middleware's hooks (the last one failing), serves generation
``generation``, reports that it is ready, and stays alive until ``stop`` is set.
"""

from __future__ import annotations

import traceback
from pathlib import Path
from types import SimpleNamespace
from typing import Any


def worker_process(folder: str, tasks: int, generation: int, ready: Any, stop: Any) -> None:
    try:
        import dramatiq

        from recsys.config import Settings
        from recsys_workers.metrics import WorkerMetricsMiddleware

        loaded = SimpleNamespace(generation=generation)
        services = SimpleNamespace(settings=Settings(heartbeat_interval=1), metrics=None, loaded=lambda: loaded)
        middleware = WorkerMetricsMiddleware(services, serve=True, folder=Path(folder))  # type: ignore[arg-type]
        middleware.after_process_boot(None)  # type: ignore[arg-type]
        for n in range(tasks):
            message = dramatiq.Message(queue_name="q", actor_name="recommend", args=(), kwargs={}, options={})
            middleware.before_process_message(None, message)  # type: ignore[arg-type]
            result: Any = {"error": {"code": "no_engine", "message": "none"}} if n == tasks - 1 else {"ok": 1}
            middleware.after_process_message(None, message, result=result)  # type: ignore[arg-type]
        assert services.metrics is not None
        services.metrics.engine_loaded("lexical", 0.2)
        ready.put(("ok", None))
    except BaseException:  # report anything, or the parent waits for nothing
        ready.put(("error", traceback.format_exc()))
        return
    stop.wait(120)
