"""Scheduled rebuilds: ``RECSYS_REBUILD_CRON`` through periodiq.

``periodiq recsys_workers`` (the scheduler, one process) sends the
``scheduled_build`` actor at every tick of ``RECSYS_REBUILD_CRON``, with the tick's
time in the message option ``scheduled_at``. A worker runs it on the build queue:

1. it claims the tick in Redis (:meth:`BuildLock.claim_tick`, keyed by the tick's
   minute in UTC): when two schedulers run by mistake, the second claim of the
   same tick fails and that message does nothing;
2. when a build runs or is queued (:meth:`BuildLock.busy`), the tick is skipped;
3. otherwise it marks a ``build_index`` message as queued (as the API does for
   ``POST /v1/engine/builds``), records it as a task, and sends it.

The ``build_index`` lock still refuses a second build, whatever sent it. Ticks older
than five minutes when a worker gets them are skipped (periodiq's middleware).

**Empty cron.** The actor is declared without a schedule. periodiq exits with an
error when there is nothing to schedule, which under compose's restart policy would
be a crash loop; so when ``recsys_workers`` is imported by the periodiq command and
the cron is empty, the process logs that scheduling is off and idles until it is
stopped (SIGTERM/SIGINT: exit 0). Setting the cron and restarting it turns
scheduling on.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import dramatiq
from dramatiq import Broker
from dramatiq.middleware import CurrentMessage
from periodiq import cron

from recsys import protocol
from recsys.errors import RecsysError
from recsys_workers.building import record_task
from recsys_workers.services import WorkerServices

__all__ = [
    "SCHEDULED_BUILD_ACTOR",
    "declare_scheduled_build",
    "idle_unscheduled",
    "running_under_periodiq",
    "tick_key",
]

logger = logging.getLogger(__name__)

SCHEDULED_BUILD_ACTOR = "scheduled_build"


def tick_key(scheduled_at: str) -> str:
    """The tick's minute in UTC (``2026-11-28T03:00Z``), the same for every scheduler
    whatever its time zone; an unparseable value is used as it is."""
    try:
        moment = datetime.fromisoformat(scheduled_at.strip())
    except ValueError:
        return scheduled_at.strip()
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")


def handle_tick(
    services: WorkerServices, build_index: dramatiq.Actor[Any, Any], scheduled_at: str | None
) -> str | None:
    """Turn one tick into at most one build; returns the sent build's id, or None."""
    if scheduled_at is None:
        logger.info("scheduled_build sent by hand (no scheduled_at): treating it as a tick of now")
        scheduled_at = datetime.now(UTC).isoformat()
    tick = tick_key(scheduled_at)
    lock = services.build_lock
    try:
        if not lock.claim_tick(tick):
            logger.info("scheduled build of %s: another scheduler's message already took this tick", tick)
            return None
        busy = lock.busy()
        if busy is not None:
            logger.info("scheduled build of %s skipped: %s", tick, busy)
            return None
        message = build_index.message()
        if not lock.mark_queued(message.message_id):
            logger.info("scheduled build of %s skipped: %s", tick, lock.busy() or "a build was just queued")
            return None
    except RecsysError as exc:
        logger.error("scheduled build of %s not started: %s", tick, exc)
        return None
    record_task(services, message.message_id, protocol.BUILD_ACTOR, message.queue_name)
    build_index.broker.enqueue(message)
    logger.info("scheduled build of %s: sent build_index %s", tick, message.message_id)
    return str(message.message_id)


def declare_scheduled_build(
    broker: Broker, services: WorkerServices, build_index: dramatiq.Actor[Any, Any]
) -> dramatiq.Actor[Any, Any]:
    """Declare ``scheduled_build``, periodic when ``RECSYS_REBUILD_CRON`` is set. The
    broker must have periodiq's middleware (the ``periodic`` option)."""
    options: dict[str, Any] = {}
    if services.settings.rebuild_cron:
        options["periodic"] = cron(services.settings.rebuild_cron)

    def scheduled_build() -> None:
        message = CurrentMessage.get_current_message()
        scheduled_at = message.options.get("scheduled_at") if message is not None else None
        handle_tick(services, build_index, scheduled_at if isinstance(scheduled_at, str) else None)

    return dramatiq.actor(
        broker=broker,
        actor_name=SCHEDULED_BUILD_ACTOR,
        queue_name=services.settings.build_queue,
        max_retries=0,
        time_limit=60_000,
        **options,
    )(scheduled_build)


def running_under_periodiq(argv: Sequence[str] | None = None) -> bool:
    """Whether this process is the ``periodiq`` command (or ``python -m periodiq``)."""
    args = sys.argv if argv is None else argv
    if not args:
        return False
    program = Path(args[0])
    if program.name == "periodiq":
        return True
    return program.parent.name == "periodiq" and program.stem in {"__init__", "__main__"}


def idle_unscheduled() -> NoReturn:
    """Log that scheduling is off, then wait for SIGTERM/SIGINT and exit 0."""
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    logger.warning(
        "RECSYS_REBUILD_CRON is empty: scheduled rebuilds are off and this scheduler sends nothing. "
        "It idles until stopped; set RECSYS_REBUILD_CRON (e.g. '0 3 * * *') and restart it to schedule builds."
    )
    while not stop.wait(3600):
        pass
    logger.info("scheduler stopped")
    raise SystemExit(0)
