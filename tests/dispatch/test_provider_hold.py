"""A provider that asks for an hour: a 429 with `Retry-After: 3600` holds the account (for the
limiter's cap, 600 s), and that is said where people look: the run's log at once (and each
minute while it lasts), `campaign show`, the dashboard's JSON and /metrics."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from tests.processes import free_port
from tests.providers.harness import Workspace

pytestmark = pytest.mark.timeout(120)


async def test_an_hour_asked_is_said_everywhere(own_database_url: str, own_db, tmp_path: Path):
    asked: list[str] = []

    async def calls(request: web.Request) -> web.Response:
        asked.append(request.method)
        return web.json_response(
            {"error": "come back in an hour"}, status=429, headers={"Retry-After": "3600"}
        )

    app = web.Application()
    app.router.add_route("*", "/v1/calls", calls)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        work = Workspace(tmp_path, own_database_url, free_port())
        work.configure(
            "sim-main",
            f'kind = "sim"\nbase_url = "http://127.0.0.1:{port}"\nsecret = "hold-secret-1"\n'
            'rate = "5/s"\nchannels = 2',
        )
        await work.load("held", "sim-main", count=5)
        async with work.serve():
            code, output = await work.dialer("run", "held", "--for", "8s")
            show_code, shown = await work.dialer("campaign", "show", "held")
            async with aiohttp.ClientSession() as session:
                async with session.get(f"{work.callback_base}/api/campaigns") as answer:
                    dashboard = await answer.json()
                async with session.get(f"{work.callback_base}/metrics") as answer:
                    metrics = await answer.text()
    finally:
        await runner.cleanup()
    assert code == 3, output  # stopped by --for with work left
    assert asked == ["POST"]  # one request, then every process waits out the hold
    assert output.count("rate limited (429)") == 1
    said = [line for line in output.splitlines() if "account held by the provider" in line]
    assert len(said) == 1 and "retry_after_asked_s=3600" in said[0], output
    row = await own_db.fetchrow(
        "SELECT extract(epoch FROM held_until - now()) AS left_s, held_asked_s FROM accounts"
    )
    assert 580 < row["left_s"] <= 600 and row["held_asked_s"] == 3600
    assert show_code == 0 and "held by the provider until" in shown, shown
    assert "Retry-After asked 3600 s" in shown
    hold = dashboard["campaigns"][0]["account_hold"]
    assert hold["retry_after_asked_s"] == 3600 and hold["until"]
    gauge = next(
        line
        for line in metrics.splitlines()
        if line.startswith('dialer_account_held_seconds{account="sim-main"}')
    )
    assert 570 < float(gauge.split()[-1]) <= 600, gauge
