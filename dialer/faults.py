"""Named fault points, so that tests can stop a real process at the worst moment.

With DIALER_FAULT=<name> in its environment, a process sends itself SIGSTOP the first time it
reaches the fault point of that name (a test then waits, and sends SIGCONT). Nothing else
changes; unset (always, outside tests) a fault point costs one dictionary look-up.

Points: `after-dialing-commit` (an attempt was committed `dialing`, its request not yet sent);
`holding-account-lock` (inside the claim transaction, with the account's limiter row locked).
"""

from __future__ import annotations

import os
import signal

_reached: set[str] = set()


def fault_point(name: str) -> None:
    if os.environ.get("DIALER_FAULT") != name or name in _reached:
        return
    _reached.add(name)
    os.kill(os.getpid(), signal.SIGSTOP)
