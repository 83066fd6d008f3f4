"""Background tasks that must not die quietly (the reconciler): a death is logged, made
visible (serve's /healthz answers 503) and ends the process with a non-zero exit, so systemd
or cron restarts it instead of a process that looks alive and no longer reconciles."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

log = logging.getLogger("dialer.supervise")


def watch(task: asyncio.Task, on_death: Callable[[BaseException], None]) -> None:
    """Call `on_death` if `task` ends other than by cancellation: with its exception, or a
    RuntimeError saying it returned (a loop meant to run forever that ends has died too)."""

    def done(finished: asyncio.Task) -> None:
        if finished.cancelled():
            return
        error = finished.exception() or RuntimeError(f"{finished.get_name()} returned")
        log.error("background task died", extra={"task": finished.get_name(), "error": repr(error)})
        on_death(error)

    task.add_done_callback(done)
