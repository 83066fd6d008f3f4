"""A free local port for a server this process is about to start, picked where no outgoing
connection can take it first.

Binding port 0 returns a port from the kernel's range for outgoing connections (32768-60999
by default), and any client socket opened before the server binds it (a connection to
PostgreSQL, an HTTP request) may be given that same port: the server then fails with "already
in use". A port just below that range is never handed to a client socket.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

_PICK = random.SystemRandom()  # not the `random` module's state, which tests may seed
_SPAN = 12_000  # ports below the outgoing range to pick from
_OUTGOING_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def free_port(host: str = "127.0.0.1") -> int:
    """A port of `host` nothing listens on now, below the outgoing range (else one the kernel
    chooses, if every pick there is taken)."""
    low = _outgoing_low()
    first = max(1024, low - _SPAN)
    if low - first >= 1000:  # (a range that starts too low leaves no room below it)
        for _ in range(200):
            port = _PICK.randrange(first, low)
            with socket.socket() as sock:
                try:
                    sock.bind((host, port))
                except OSError:
                    continue
                return port
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _outgoing_low() -> int:
    """The first port of the kernel's range for outgoing connections (Linux; 32768 elsewhere)."""
    try:
        return int(_OUTGOING_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768
