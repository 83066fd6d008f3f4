"""The send deadline: no create-call request leaves after its attempt could have been closed.

An attempt committed as `dialing` must be sent within SEND_WINDOW_S of that commit, or not at
all: the reconciler may close a `dialing` attempt that has no call id once SEND_WINDOW_S plus
the HTTP client's own timeout (CLIENT_TIMEOUT_S) have passed since the commit, so a request
written later (after a SIGSTOP, a VM suspend, a stall) could place a call nobody waits for.

- The clock starts before the commit's transaction begins (so it runs ahead of the database's),
  and is read on two clocks: the boot-time clock (which runs through a suspend, unlike the
  monotonic one) and the wall clock; either one past the window is enough to refuse.
- It is checked when the request's connection is ready, just before the request is written
  (an aiohttp trace hook), not only before connecting, which may itself take seconds.
- Every connection lingers zero seconds on close: a request that timed out while sitting in a
  socket buffer (a partition) is dropped by the kernel with a reset, never delivered later.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import aiohttp

from dialer.providers.errors import NotDialed

SEND_WINDOW_S = 10.0  # from the `dialing` commit to the last moment a request may be written
CLIENT_TIMEOUT_S = 15.0  # the whole of one request to a provider, connect to last byte
CONNECT_TIMEOUT_S = 5.0
SEND_WINDOW = timedelta(seconds=SEND_WINDOW_S)
CLIENT_TIMEOUT = timedelta(seconds=CLIENT_TIMEOUT_S)


def _boot_clock() -> float:
    """Seconds on a clock that keeps counting while the machine or VM is suspended."""
    try:
        return time.clock_gettime(time.CLOCK_BOOTTIME)
    except (AttributeError, OSError):  # not Linux
        return time.monotonic()


class TooLate(NotDialed):
    """The request was not written: its attempt's send window had passed."""


@dataclass
class SendDeadline:
    """Started just before the attempt's `dialing` commit; see the module docstring."""

    window_s: float = SEND_WINDOW_S
    _boot: float = field(default_factory=_boot_clock)
    _wall: float = field(default_factory=time.time)
    # asked when the request is about to be written: seconds to wait first, 0 to go now (and
    # then the request counts as gone; dispatch.limiter.DepartureSpacing.admit)
    admit: Callable[[float], float] | None = None

    def elapsed_s(self) -> float:
        return max(_boot_clock() - self._boot, time.time() - self._wall)

    def check(self) -> None:
        """Raise TooLate if the window has passed."""
        elapsed = self.elapsed_s()
        if elapsed > self.window_s:
            raise TooLate(
                f"not sent: {elapsed:.1f} s after its dialing commit, past the"
                f" {self.window_s:g} s send window (the process was paused or stalled)"
            )


async def _check_before_writing(
    session: aiohttp.ClientSession, context: SimpleNamespace, params: Any
) -> None:
    deadline = (context.trace_request_ctx or {}).get("deadline")
    if isinstance(deadline, SendDeadline):
        deadline.check()
        if deadline.admit is not None:
            while (wait_s := deadline.admit(time.monotonic())) > 0:
                await asyncio.sleep(wait_s)
                deadline.check()


def deadline_tracing() -> aiohttp.TraceConfig:
    """Checks a request's SendDeadline (passed as trace_request_ctx={"deadline": ...}) once its
    connection is ready, new or reused, right before the request is written; and waits there
    for its admission (SendDeadline.admit), if it has one."""
    config = aiohttp.TraceConfig()
    config.on_connection_create_end.append(_check_before_writing)
    config.on_connection_reuseconn.append(_check_before_writing)
    return config


def abortive_socket(addr_info: tuple) -> socket.socket:
    """A client socket whose close is an abort: SO_LINGER 0 makes the kernel drop unsent data
    and send a reset, so a timed-out request is never delivered after we gave up on it."""
    family, kind, proto, _, _ = addr_info
    sock = socket.socket(family=family, type=kind, proto=proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    return sock
