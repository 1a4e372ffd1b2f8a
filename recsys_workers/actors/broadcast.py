"""``engine_updated(generation, version, created_at, sha256, manifest_sha256)``: the rollout broadcast.

Every worker process receives each broadcast once, on its own exclusive queue bound
to the fanout exchange (:mod:`recsys_workers.fanout`). The actor never retries and
stores no result. It runs before the requests and builds a process has already
fetched (Dramatiq runs lower ``priority`` numbers first), so a full queue of
requests does not delay a rollout.

The API sends ``generation, version, created_at, manifest_sha256`` (the version's
identity); a first-wave API sent ``sha256`` (its archive's) instead, which makes the
machine download the full archive. A generation not above the machine's is ignored.
Otherwise one process per machine downloads the files it lacks, checks and installs
them (:meth:`Rollout.follow <recsys_workers.rollout.Rollout.follow>`; the others wait
for the machine's download lock and find it installed), and every process then loads
it (:meth:`Rollout.refresh <recsys_workers.rollout.Rollout.refresh>`). A failed download or check leaves the
engine in service, and says why in the log (:func:`recsys_workers.errors.attempt`);
the catch-up thread tries again later.
"""

from __future__ import annotations

import logging
from typing import Any

import dramatiq
from dramatiq import Broker

from recsys import protocol
from recsys.errors import InvalidTarget, RecsysError
from recsys_workers.errors import attempt
from recsys_workers.rollout import Followed, Target
from recsys_workers.services import WorkerServices

__all__ = ["BROADCAST_PRIORITY", "BROADCAST_TIME_LIMIT", "declare_engine_updated", "handle_engine_updated"]

logger = logging.getLogger(__name__)

#: Dramatiq runs lower numbers first: broadcasts before requests (10) and builds (20).
BROADCAST_PRIORITY = 0
#: Milliseconds a broadcast may take: waiting for the machine's download, downloading
#: and unpacking a multi-GB archive.
BROADCAST_TIME_LIMIT = 3_600_000

_DONE = {
    Followed.IGNORED: "nothing to do, this machine already has generation {have}",
    Followed.ALREADY: "installed meanwhile by another process of this machine",
    Followed.ACTIVATED: "switched to the version already on disk",
    Followed.INSTALLED: "downloaded what was missing, checked and installed",
}


def _serving(services: WorkerServices) -> str:
    loaded = services.loaded()
    if loaded is None:
        return "no engine"
    return f"generation {loaded.generation} (version {loaded.version})"


def handle_engine_updated(
    services: WorkerServices,
    generation: Any,
    version: Any,
    created_at: Any = None,
    sha256: Any = None,
    manifest_sha256: Any = None,
) -> None:
    """Follow one broadcast; every failure is logged, none is raised."""
    try:
        target = Target(generation=generation, version=version, sha256=sha256, created_at=created_at,
                        manifest_sha256=manifest_sha256)
    except InvalidTarget as exc:
        logger.error("engine_updated: ignoring a broadcast that cannot be followed: %s", exc)
        return
    outcome = attempt(lambda: services.rollout.follow(target), logger=logger,
                      failed=f"engine_updated {target.describe()}: NOT installed", what="the install",
                      limit=f"{BROADCAST_TIME_LIMIT // 1000} s",
                      consequence=f". This process keeps serving {_serving(services)}.")
    if isinstance(outcome, RecsysError):
        return
    followed, _ = outcome
    logger.info("engine_updated %s: %s", target.describe(),
                _DONE[followed].format(have=services.store.generation))
    try:
        services.rollout.refresh()
    except RecsysError as exc:
        logger.error("engine_updated %s: the engine is installed but this process cannot load it: %s",
                     target.describe(), exc)


def declare_engine_updated(broker: Broker, services: WorkerServices) -> dramatiq.Actor[Any, Any]:
    def engine_updated(
        generation: Any, version: Any, created_at: Any = None, sha256: Any = None, manifest_sha256: Any = None
    ) -> None:
        handle_engine_updated(services, generation, version, created_at, sha256, manifest_sha256)

    return dramatiq.actor(
        broker=broker,
        actor_name=protocol.ENGINE_UPDATED_ACTOR,
        queue_name=services.settings.broadcast_exchange,
        priority=BROADCAST_PRIORITY,
        max_retries=0,
        store_results=False,
        time_limit=BROADCAST_TIME_LIMIT,
    )(engine_updated)
