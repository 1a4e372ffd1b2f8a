"""The start-engine step, run once per API deployment (not in every API process).

In a deployment it runs in gunicorn's master before the first worker is forked
(``when_ready`` in ``deploy/gunicorn.conf.py`` calls :func:`run_start_step`), so the
gunicorn workers start with nothing to do but serve; ``recsys serve`` runs it once
after its components start. Creating the app (:func:`recsys_api.app.create_app`)
never runs it.

1. If the archive store is empty and ``RECSYS_START_ENGINE`` names an archive, install
   it (verified like an upload). A missing or invalid start archive is a ConfigError:
   the operator asked for it, so the API refuses to start without it.
2. If the store is still empty, send one ``build_index`` (the demo corpus counts as a
   configured source, so a fresh stack builds its first engine by itself). The
   cluster-wide queued marker makes sure that several API instances send only one.
   Redis or RabbitMQ being down at this moment is logged, not fatal: the API starts,
   and ``POST /v1/engine/builds`` can start the build later.
"""

from __future__ import annotations

import logging
from pathlib import Path

from recsys.cluster import BuildLock, TaskRecords
from recsys.config import Settings
from recsys.errors import BuildBusy, ConfigError, InvalidArchive, MissingFiles, Unavailable
from recsys_api.archive_store import ArchiveStore, StoredVersion
from recsys_api.broadcast import Broadcaster
from recsys_api.builds import BuildStarter

__all__ = ["run_start_step", "start_engine"]

logger = logging.getLogger(__name__)


def start_engine(
    store: ArchiveStore, builds: BuildStarter, broadcaster: Broadcaster, start_archive: Path | None
) -> str:
    """Make sure an engine exists or is on its way; returns what was done
    (``"present"``, ``"installed"``, ``"build sent"``, ``"build busy"``, ``"build not sent"``)."""
    if store.current() is not None:
        return "present"
    if start_archive is not None:
        installed = _install_start_archive(store, start_archive)
        if installed:
            broadcaster.publish(installed)
            return "installed"
        if store.current() is not None:
            return "present"
    try:
        task_id = builds.start()
    except BuildBusy as exc:
        logger.info("no engine yet; not sending a build: %s", exc.message)
        return "build busy"
    except Unavailable as exc:
        logger.warning("no engine yet, and the first build could not be sent: %s. "
                       "Start one with POST /v1/engine/builds once the service is back", exc.message)
        return "build not sent"
    logger.info("no engine yet: sent build_index (task %s); GET /v1/tasks/%s follows it", task_id, task_id)
    return "build sent"


def _install_start_archive(store: ArchiveStore, path: Path) -> StoredVersion | None:
    try:
        with open(path, "rb") as stream:
            installed = store.install(stream, length=path.stat().st_size, only_if_empty=True)
    except FileNotFoundError as exc:
        raise ConfigError(f"RECSYS_START_ENGINE={str(path)!r} does not exist; fix the path or unset it") from exc
    except OSError as exc:
        raise ConfigError(f"RECSYS_START_ENGINE={str(path)!r} cannot be read: {exc}") from exc
    except InvalidArchive as exc:
        raise ConfigError(f"RECSYS_START_ENGINE={str(path)!r} is not a valid engine archive: {exc.message}") from exc
    except MissingFiles as exc:
        raise ConfigError(
            f"RECSYS_START_ENGINE={str(path)!r} is a thin archive (it leaves out {len(exc.missing)} files); "
            "give a full one, e.g. from GET /v1/engine/archive or 'recsys build'"
        ) from exc
    if installed is not None:
        logger.info("installed the start engine %s from %s as generation %d", installed.version, path,
                    installed.generation)
    return installed


def run_start_step(settings: Settings) -> str:
    """The start-engine step of a deployment, on its own short-lived connections to
    RabbitMQ and Redis (closed before returning, so a forking caller shares none).
    Returns what :func:`start_engine` did; raises ConfigError for a bad start archive
    or a missing ``RECSYS_BROKER_URL``."""
    from recsys_api import services
    from recsys_api.app import require_broker
    from recsys_api.broadcast import PikaBroadcaster
    from recsys_api.redis_results import redis_backend
    from recsys_api.tasks import TaskClient

    broker_url = require_broker(settings)
    store = services.open_archive_store(settings)
    kv = services.redis_kv(settings.results_url)
    broker = services.rabbitmq_broker(broker_url)
    backend = redis_backend(settings.results_url, longest_wait=settings.request_timeout)
    try:
        broker.declare_queue(settings.build_queue)
        tasks = TaskClient(broker, backend, TaskRecords(kv, settings.result_ttl), result_ttl=settings.result_ttl,
                           broker_url=broker_url, results_url=settings.results_url)
        builds = BuildStarter(tasks, BuildLock(kv, settings.build_lock_ttl), settings.build_queue)
        broadcaster = PikaBroadcaster(broker_url, settings.broadcast_exchange)
        return start_engine(store, builds, broadcaster, settings.start_engine)
    finally:
        broker.close()
        kv.close()
        client = getattr(backend, "client", None)
        if client is not None:
            client.close()
