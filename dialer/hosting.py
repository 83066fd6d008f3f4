"""What a process that listens on a port does so that a flood cannot take it down: descriptors
raised to the hard limit, accept errors logged once per interval with a count, and worker
processes that never outlive their parent.

- At start the soft limit of open files is raised to the hard one: a burst of idle
  connections then costs descriptors the process has, instead of failing accept() at 1,024.
- When accept() still fails for want of descriptors or memory (EMFILE, ENFILE, ENOBUFS,
  ENOMEM), asyncio logs a traceback for every failure, many a second; here one line says it
  at most every ACCEPT_LOG_EVERY_S, with how many failed since.
- `dialer serve --workers N` starts N - 1 worker processes; each asks the kernel to send it
  SIGTERM when its parent dies (Linux PR_SET_PDEATHSIG) and also checks its parent every
  second, so a parent killed with SIGKILL never leaves workers listening on the port.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import logging
import os
import resource
import signal
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("dialer.serve")

ACCEPT_LOG_EVERY_S = 10.0
_RESOURCE_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
PR_SET_PDEATHSIG = 1


def raise_open_files_limit() -> tuple[int, int]:
    """Raise the soft limit of open files to the hard limit; (soft, hard) after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open files limit", extra={"error": repr(exc)})
    return resource.getrlimit(resource.RLIMIT_NOFILE)


class AcceptErrors:
    """A loop exception handler: accept() failures for want of resources are counted and said
    once per interval; everything else goes to the handler that was there before."""

    def __init__(self, every_s: float = ACCEPT_LOG_EVERY_S) -> None:
        self.every_s = every_s
        self.count = 0
        self.said_at = 0.0
        self.previous: Callable[[asyncio.AbstractEventLoop, dict[str, Any]], object] | None = None

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if (
            isinstance(exc, OSError)
            and exc.errno in _RESOURCE_ERRNOS
            and "accept" in str(context.get("message", ""))
        ):
            self.count += 1
            now = time.monotonic()
            if now - self.said_at >= self.every_s:
                log.error(
                    "cannot accept connections: out of resources; new connections wait",
                    extra={
                        "error": os.strerror(exc.errno or 0),
                        "failures": self.count,
                        "open_files_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
                    },
                )
                self.said_at = now
                self.count = 0
            return
        if isinstance(exc, ValueError) and "_start_serving" in repr(context.get("handle")):
            # accept() was paused for want of descriptors and the server closed meanwhile
            # (shutting down): asyncio's retry finds no socket. Nothing is lost.
            log.info("listening stopped while accepting was paused for want of descriptors")
            return
        if self.previous is not None:
            self.previous(loop, context)
        else:
            loop.default_exception_handler(context)

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        self.previous = loop.get_exception_handler()
        loop.set_exception_handler(self)


def die_with_parent(parent_pid: int) -> None:
    """Ask the kernel to send SIGTERM to this process when its parent dies (Linux); if the
    parent is already gone, stop now."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux: watch_parent still ends the worker
    if os.getppid() != parent_pid:
        os.kill(os.getpid(), signal.SIGTERM)


async def watch_parent(parent_pid: int, stop: Callable[[], None], every_s: float = 1.0) -> None:
    """Call `stop` once this process's parent is no longer `parent_pid` (it died)."""
    while os.getppid() == parent_pid:  # noqa: ASYNC110 (a process, not an event, to wait for)
        await asyncio.sleep(every_s)
    log.error("the serve parent process is gone; this worker stops", extra={"parent": parent_pid})
    stop()
