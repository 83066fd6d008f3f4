"""A process's health, owned in one place: background tasks (the reconciler, webhook
deliveries, a sender) must not die quietly. The Supervisor watches them; the first death is
kept with the name of the task that died, logged, made visible (serve's /healthz answers 503
naming it) and told to whoever stops the process (exit 1), so systemd or cron restarts it
instead of a process that looks alive and no longer works."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("dialer.supervise")


@dataclass(frozen=True)
class Death:
    """A background task that ended other than by cancellation."""

    task: str
    error: BaseException

    def said(self) -> str:
        return f"{self.task} died: {self.error!r}"


class Supervisor:
    """The process's health: the first death of a watched task, and who is told of it."""

    def __init__(self) -> None:
        self.death: Death | None = None
        self._listeners: list[Callable[[Death], None]] = []

    @property
    def healthy(self) -> bool:
        return self.death is None

    def on_death(self, listener: Callable[[Death], None]) -> None:
        """Also tell `listener` of the first death (the dispatcher stops as failed)."""
        self._listeners.append(listener)

    def watch(self, task: asyncio.Task) -> None:
        """`task` ending other than by cancellation is a death: with its exception, or a
        RuntimeError saying it returned (a loop meant to run forever that ends has died)."""

        def done(finished: asyncio.Task) -> None:
            if finished.cancelled():
                return
            error = finished.exception() or RuntimeError(f"{finished.get_name()} returned")
            self.died(finished.get_name(), error)

        task.add_done_callback(done)

    def died(self, task: str, error: BaseException) -> None:
        """Record a death (the first one is kept) and tell the listeners."""
        log.error("background task died", extra={"task": task, "error": repr(error)})
        if self.death is not None:
            return
        self.death = Death(task, error)
        for listener in self._listeners:
            listener(self.death)
