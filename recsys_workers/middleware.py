"""Worker middleware, one concern each: the engine a task needs, heartbeats, catch-up.

**EngineMiddleware** reads the actor option ``engine`` (docs/architecture.md, Tasks):

=========  ==================================================================
``none``   (default) nothing: plain tasks such as ``build_index``
``any``    serve the newest engine on this machine's disk, loading it into this
           process if it changed; pull the API's current one first when the
           machine has none. A message whose request says ``"strict": true`` is
           handled as ``strict``.
``strict`` as ``any``, and the engine must be at least the generation the API sent
           with the message (``request["min_generation"]``), pulled first if not.
=========  ==================================================================

The middleware reads the option and the message; what engine to serve and what to
pull is decided by :meth:`Rollout.prepare <recsys_workers.rollout.Rollout.prepare>`.

The outcome (the engine, or the RecsysError that explains why there is none) is
handed to the actor through :func:`task_engine`, never raised from the hook:
Dramatiq's broker logs and swallows exceptions raised in ``before_*`` hooks
(``Broker.emit_before``), so an error raised there would never reach the client.

**HeartbeatMiddleware** and **CatchUpMiddleware** start their thread
(:mod:`recsys_workers.periodic`) when the worker boots and stop it when it shuts
down.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Mapping
from typing import Any

from dramatiq import Broker, Middleware, Worker
from dramatiq.common import q_name
from dramatiq.threading import Interrupt

from recsys.cache import Loaded
from recsys.errors import InternalError, RecsysError, TaskInterrupted
from recsys_workers.errors import InvalidEngineOption
from recsys_workers.periodic import CatchUpThread, HeartbeatThread
from recsys_workers.services import WorkerServices

__all__ = [
    "ENGINE_OPTION",
    "EngineMiddleware",
    "HeartbeatMiddleware",
    "CatchUpMiddleware",
    "prepare_engine",
    "task_engine",
]

logger = logging.getLogger(__name__)

ENGINE_OPTION = "engine"
NONE, ANY, STRICT = "none", "any", "strict"
MODES = (NONE, ANY, STRICT)

_outcome: contextvars.ContextVar[Loaded | RecsysError | None] = contextvars.ContextVar(
    "recsys_task_engine", default=None
)


def task_engine() -> Loaded:
    """The engine prepared for the running task; raises the RecsysError that
    prevented it (NoEngine, Unavailable, EngineLoadError...)."""
    outcome = _outcome.get()
    if outcome is None:
        raise RuntimeError(
            "no engine was prepared for this task: declare its actor with engine='any' or engine='strict', "
            "and add EngineMiddleware to the broker"
        )
    if isinstance(outcome, RecsysError):
        raise outcome
    return outcome


def _request_of(message: Any) -> Mapping[str, Any]:
    """The ``request`` argument of an engine task (first positional or keyword)."""
    request = message.args[0] if message.args else message.kwargs.get("request")
    return request if isinstance(request, Mapping) else {}


def _generation(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def prepare_engine(services: WorkerServices, mode: str, request: Mapping[str, Any]) -> Loaded:
    """Make this process serve the engine a task of ``mode`` needs (see the module doc)."""
    strict = mode == STRICT or request.get("strict") is True
    return services.rollout.prepare(strict=strict, at_least=_generation(request.get("min_generation")))


class EngineMiddleware(Middleware):
    """Prepares the engine of ``engine="any"|"strict"`` tasks before they run."""

    def __init__(self, services: WorkerServices) -> None:
        self.services = services

    @property
    def actor_options(self) -> set[str]:
        return {ENGINE_OPTION}

    def before_declare_actor(self, broker: Broker, actor: Any) -> None:
        mode = actor.options.get(ENGINE_OPTION, NONE)
        if mode not in MODES:
            # A MiddlewareError is the one kind that Broker.emit_before lets through.
            raise InvalidEngineOption(
                f"actor {actor.actor_name!r}: engine={mode!r} is not one of {', '.join(MODES)}"
            )

    def before_process_message(self, broker: Broker, message: Any) -> None:
        mode = broker.get_actor(message.actor_name).options.get(ENGINE_OPTION, NONE)
        if mode == NONE:
            return
        outcome: Loaded | RecsysError
        try:
            outcome = prepare_engine(self.services, mode, _request_of(message))
        except RecsysError as exc:
            outcome = exc
        except Interrupt as exc:  # the task's time limit struck while we pulled an engine
            self.services.request_catch_up()  # fetch it in the background instead
            outcome = TaskInterrupted(
                f"the task was stopped ({type(exc).__name__}) while this worker fetched its engine; "
                "the worker goes on fetching it in the background: retry shortly"
            )
        except Exception as exc:
            logger.exception("preparing the engine for message %s failed unexpectedly", message.message_id)
            outcome = InternalError(f"preparing the engine failed unexpectedly: {type(exc).__name__}: {exc}")
        _outcome.set(outcome)

    def after_process_message(
        self, broker: Broker, message: Any, *, result: Any = None, exception: BaseException | None = None
    ) -> None:
        _outcome.set(None)

    def after_skip_message(self, broker: Broker, message: Any) -> None:
        _outcome.set(None)


def consumed_queues(worker: Worker) -> list[str]:
    """The canonical names of the queues ``worker`` consumes (no ``.DQ`` names)."""
    return sorted({q_name(name) for name in worker.consumers})


class HeartbeatMiddleware(Middleware):
    """Starts the heartbeat thread at worker boot; deletes the heartbeat at shutdown."""

    def __init__(self, services: WorkerServices) -> None:
        self.services = services
        self.thread: HeartbeatThread | None = None

    def after_worker_boot(self, broker: Broker, worker: Worker) -> None:
        self.thread = HeartbeatThread(self.services, consumed_queues(worker))
        self.thread.start()

    def before_worker_shutdown(self, broker: Broker, worker: Worker) -> None:
        if self.thread is not None:
            self.thread.stop()
            self.thread = None


class CatchUpMiddleware(Middleware):
    """Starts the catch-up thread at worker boot, and asks it to run whenever the
    broadcast queue is (re)bound."""

    def __init__(self, services: WorkerServices) -> None:
        self.services = services
        self.thread: CatchUpThread | None = None

    def after_worker_boot(self, broker: Broker, worker: Worker) -> None:
        listeners = getattr(broker, "bind_listeners", None)
        if listeners is not None:
            listeners.append(self.services.request_catch_up)
        self.thread = CatchUpThread(self.services)
        self.thread.start()

    def before_worker_shutdown(self, broker: Broker, worker: Worker) -> None:
        if self.thread is not None:
            self.thread.stop()
            self.thread = None
