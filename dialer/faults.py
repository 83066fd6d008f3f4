"""Named fault points, so that tests can stop a real process at the worst moment.

With DIALER_FAULT=<name> in its environment, a process sends itself SIGSTOP the first time it
reaches the fault point of that name (a test then waits, and sends SIGCONT); with
DIALER_FAULT=<name>:crash it raises InjectedCrash there instead (a death no handler meant for
real errors catches). Nothing else changes; unset (always, outside tests) a fault point costs
one dictionary look-up.

Points: `after-dialing-commit` (an attempt was committed `dialing`, its request not yet sent);
`picked-before-account-lock` (inside the claim transaction, its contacts and their numbers
locked, before it waits for the account's limiter row); `holding-account-lock` (inside the
claim transaction, with the account's limiter row locked);
`reconciler-round` (the reconciler's loop, before each round); `reconciler-turn-taken`
(the reconciler's loop, its turn taken and committed, before its round); `holding-standing-lock`
(inside a do-not-call or consent change, once it holds db.standing's lock).
"""

from __future__ import annotations

import os
import signal

_reached: set[str] = set()


class InjectedCrash(BaseException):
    """A fault point's crash: a BaseException, so that no `except Exception` swallows it."""


def fault_point(name: str) -> None:
    wanted = os.environ.get("DIALER_FAULT")
    if wanted is None or name in _reached:
        return
    point, _, action = wanted.partition(":")
    if point != name:
        return
    _reached.add(name)
    if action == "crash":
        raise InjectedCrash(f"fault point {name}")
    os.kill(os.getpid(), signal.SIGSTOP)
