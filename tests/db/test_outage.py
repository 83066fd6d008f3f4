"""The outage rule, pure: transient failures are waited out with a growing, capped backoff,
and only an outage longer than the limit gives up, with one message naming the cause."""

from __future__ import annotations

import asyncpg
import pytest

from dialer.db.outage import (
    BACKOFF_CAP_S,
    CONNECTION_LOST,
    REFUSED,
    REFUSED_FOR_NOW,
    TRANSIENT,
    DatabaseGone,
    Outage,
    database_refused,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_waits_grow_are_capped_and_the_limit_ends_it_naming_the_cause() -> None:
    clock = Clock()
    outage = Outage(limit_s=60, _clock=clock)
    waits = []
    for _ in range(12):
        waits.append(outage.failed(ConnectionRefusedError("refused"), "claiming"))
        clock.now += 5
    assert all(0 < w <= BACKOFF_CAP_S for w in waits) and waits[-1] > waits[0]
    clock.now += 1  # 61 s since the first failure
    with pytest.raises(DatabaseGone) as gone:
        outage.failed(ConnectionRefusedError("refused"), "claiming")
    assert "over the 60 s outage limit" in str(gone.value)
    assert "claiming: ConnectionRefusedError: refused" in str(gone.value)


def test_recovery_starts_the_count_again() -> None:
    clock = Clock()
    outage = Outage(limit_s=10, _clock=clock)
    outage.failed(OSError("down"), "claiming")
    clock.now += 9
    outage.recovered()
    clock.now += 9
    outage.failed(OSError("down again"), "claiming")  # a new outage: 0 s old, not 18
    assert outage.ongoing


def test_what_counts_as_the_database_being_away() -> None:
    away = [
        asyncpg.exceptions.ReadOnlySQLTransactionError("read-only"),
        asyncpg.exceptions.AdminShutdownError("restart"),
        asyncpg.exceptions.QueryCanceledError("statement timeout"),
        asyncpg.exceptions.LockNotAvailableError("lock timeout"),
        asyncpg.exceptions.ConnectionDoesNotExistError("gone"),
        asyncpg.InternalClientError("confused"),
    ]
    assert all(isinstance(e, TRANSIENT) for e in away)
    bugs = [asyncpg.exceptions.UndefinedColumnError("x"), ValueError("x")]
    assert not any(isinstance(e, TRANSIENT) for e in bugs)


def test_a_refusal_for_now_is_told_as_such_and_waited_out_by_dialer_run() -> None:
    """Each refusal the database may lift later (read-only, full, locked, timed out, in
    conflict) is one line saying which and what it means, never "connection lost"; and
    `dialer run` waits each out."""
    for kind, meaning in REFUSED_FOR_NOW.items():
        error = kind("cannot do that now\nDETAIL: more")
        assert isinstance(error, TRANSIENT)
        said = database_refused(error).message
        assert said.startswith("the database refused the command: " + meaning)
        assert f"({kind.__name__}: cannot do that now)" in said and "\n" not in said
    canceled = asyncpg.exceptions.QueryCanceledError("canceling statement due to statement timeout")
    assert isinstance(canceled, CONNECTION_LOST) and isinstance(canceled, REFUSED)  # refused wins
    assert not isinstance(asyncpg.exceptions.AdminShutdownError("restart"), REFUSED)
