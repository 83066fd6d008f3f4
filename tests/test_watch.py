"""What a run shows (dialer.watch): a live view on a terminal, plain log lines otherwise, and
closing lines either way. Real `dialer run` processes against the sim provider."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

from tests.processes import dialer_command, free_port, sim_provider, write_campaign, write_config
from tests.test_waiting import dialer


async def test_closing_lines_and_no_live_view_when_not_on_a_terminal(
    own_database_url: str, tmp_path: Path
) -> None:
    """Off a terminal, a run prints log lines and its closing lines, no live view (no escape
    sequence reaches a log file)."""
    with sim_provider(tmp_path, "--ring", "0.05s..0.1s", "--talk", "0.05s..0.1s") as sim:
        config = write_config(tmp_path, sim, rate="20/s", channels=4, port=free_port())
        env = os.environ | {"DIALER_DATABASE_URL": own_database_url, "DIALER_CONFIG": str(config)}
        write_campaign(tmp_path, "plain", 3)
        assert (await dialer(tmp_path, env, "campaign", "load", "plain.toml"))[0] == 0
        code, out, said = await dialer(tmp_path, env, "run", "plain", "--serve", "--wait")
        # with --format json, the same closing figures as one JSON object on stdout
        write_campaign(tmp_path, "summed", 2)
        assert (await dialer(tmp_path, env, "campaign", "load", "summed.toml"))[0] == 0
        summed = await dialer(
            tmp_path, env, "run", "summed", "--serve", "--wait", "--format", "json"
        )
    assert code in (0, 3), said[-3000:]
    assert "\x1b[" not in said and out == ""
    assert "attempt created" in said  # the log lines
    assert "dialer: this run sent" in said and f"dialer: exit {code}" in said
    assert summed[0] in (0, 3), summed[2][-3000:]  # 3: a contact at the daily dial cap
    end = json.loads(summed[1])
    assert (end["exit_code"], end["errors"]) == (summed[0], [])
    assert end["meaning"] == {0: "all work done", 3: "stopped with work left"}[summed[0]]
    assert end["sent_by_this_run"] == end["sent_since_it_began"] >= 2
    assert end["in_flight"] == 0 and sum(end["settled"].values()) == end["sent_by_this_run"]
    assert [c["campaign"] for c in end["campaigns"]] == ["summed"]
    assert "dialer: this run sent" in summed[2] and f"dialer: exit {summed[0]}" in summed[2]


async def test_on_a_terminal_a_run_shows_a_live_view(own_database_url: str, tmp_path: Path) -> None:
    """On a terminal: the live view (dialed, in flight, outcomes, calls/s against the limit,
    channels, next due) instead of info lines, then the closing lines."""
    import pty

    with sim_provider(tmp_path, "--ring", "0.3s..0.6s", "--talk", "0.3s..0.6s") as sim:
        config = write_config(tmp_path, sim, rate="20/s", channels=4, port=free_port())
        env = os.environ | {
            "DIALER_DATABASE_URL": own_database_url,
            "DIALER_CONFIG": str(config),
            "COLUMNS": "160",
            "TERM": "xterm",
        }
        write_campaign(tmp_path, "watched", 12)
        assert (await dialer(tmp_path, env, "campaign", "load", "watched.toml"))[0] == 0
        leader, follower = pty.openpty()
        process = await asyncio.create_subprocess_exec(
            *dialer_command("run", "watched", "--serve", "--wait"),
            cwd=tmp_path,
            env=env,
            stdout=follower,
            stderr=follower,
        )
        os.close(follower)
        screen = bytearray()
        loop = asyncio.get_running_loop()
        while True:
            try:
                chunk = await loop.run_in_executor(None, os.read, leader, 65536)
            except OSError:  # the terminal's other end closed: the run is over
                break
            if not chunk:
                break
            screen += chunk
        code = await asyncio.wait_for(process.wait(), timeout=120)
        os.close(leader)
    text = screen.decode(errors="replace")
    assert code in (0, 3), text[-3000:]
    for column in ("dialed", "in flight", "calls/s (limit)", "channels", "next due"):
        assert column in text, text[-3000:]
    assert "attempt created" not in text  # info lines stay out of the view
    assert "dialer: this run sent" in text and f"dialer: exit {code}" in text


async def test_the_live_view_rides_out_a_database_that_is_away(
    database_url: str, monkeypatch
) -> None:
    """On a terminal, the live view's reads fail while PostgreSQL restarts (a connection
    closed under them is an InterfaceError, not a PostgresError): the view skips them, and the
    run it watches goes on and ends as it would (its own lines say the database was away)."""
    import io

    import asyncpg
    from rich.console import Console

    from dialer import watch

    monkeypatch.setattr(watch, "err", Console(file=io.StringIO(), force_terminal=True))
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
    await pool.close()  # every read now fails as a cut connection's does

    async def work() -> int:
        return 7

    assert await watch.watched(work(), pool, [], 0, "away") == 7
