"""A command's event loop (dialer.cli.context.run): what its exception handler prints."""

from __future__ import annotations

import asyncio
import gc
import logging

import asyncpg
import pytest

from dialer.cli.context import run


async def _leave_unread(error: BaseException) -> None:
    """A future that fails and is dropped without anyone reading its error."""
    future = asyncio.get_running_loop().create_future()
    future.set_exception(error)
    del future
    gc.collect()


def test_an_unread_error_of_a_lost_connection_is_quiet_any_other_is_printed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """After PostgreSQL restarts mid-command, asyncpg may leave a future of the lost
    connection's error unread; the command says the loss in its one line, so that future is
    not printed too. An unread error of any other kind (a bug) still is."""
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        run(_leave_unread(asyncpg.ConnectionDoesNotExistError("closed in the middle")))
        assert "never retrieved" not in caplog.text
        run(_leave_unread(ValueError("a bug")))
        assert "Future exception was never retrieved" in caplog.text and "a bug" in caplog.text
