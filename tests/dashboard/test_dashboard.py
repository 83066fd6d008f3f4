"""The live dashboard of `dialer serve`: its JSON, its control actions, and the page itself in a
real headless Chromium (Debian's, driven by Playwright), with a screenshot check."""

from __future__ import annotations

import asyncio
import io
import os
import shutil
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestServer
from click.testing import CliRunner
from PIL import Image

from dialer.callbacks.app import Receiver
from dialer.cli import cli
from dialer.db.connect import open_pool
from dialer.web import create_app
from tests.conftest import TEST_CONFIG
from tests.processes import free_port, write_campaign

TOKEN = "dashboard-admin-token-7"
COMPLETED_GREEN = (0x2E, 0x9D, 0x5B)


@pytest.fixture(scope="module")
def campaigns(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """A finished simulated campaign, a second one loaded and waiting, and a third of 1,500
    contacts canceled before it dialed anyone."""
    folder = tmp_path_factory.mktemp("dash")
    write_campaign(folder, "waiting-list", 12)
    write_campaign(folder, "never-dialed", 1500)
    (folder / "dialer.toml").write_text(TEST_CONFIG)

    def call(*args: str) -> None:
        result = CliRunner().invoke(
            cli,
            ["--config", str(folder / "dialer.toml"), *args],
            env={"DIALER_DATABASE_URL": database_url},
            catch_exceptions=False,
        )
        assert result.exit_code == 0, result.stderr

    with ThreadPoolExecutor(1) as thread:
        thread.submit(call, "demo", "--contacts", "80", "--keep").result()
        thread.submit(call, "campaign", "load", str(folder / "waiting-list.toml")).result()
        thread.submit(call, "campaign", "load", str(folder / "never-dialed.toml")).result()
        thread.submit(call, "campaign", "cancel", "never-dialed").result()

    async def names() -> list[str]:
        conn = await asyncpg.connect(database_url)
        try:
            return [r["name"] for r in await conn.fetch("SELECT name FROM campaigns ORDER BY id")]
        finally:
            await conn.close()

    return asyncio.run(names())


@pytest.fixture
async def dashboard(database_url: str, campaigns: list[str]) -> AsyncIterator[str]:
    async with open_pool(database_url, size=4) as pool:
        receiver = Receiver(pool, {}, public_url="")
        server = TestServer(
            create_app(receiver, admin_token=TOKEN),
            host="127.0.0.1",
            port=free_port(),
        )
        await server.start_server()
        try:
            yield f"http://127.0.0.1:{server.port}"
        finally:
            await server.close()


async def get_json(url: str) -> dict:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200
        return await response.json()


async def post(url: str, token: str | None) -> tuple[int, dict]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with aiohttp.ClientSession() as session, session.post(url, headers=headers) as response:
        return response.status, await response.json()


async def test_api_lists_every_campaign_with_progress_and_limits(
    dashboard: str, campaigns: list[str], db
) -> None:
    data = await get_json(f"{dashboard}/api/campaigns")
    by_name = {c["name"]: c for c in data["campaigns"]}
    assert set(by_name) == set(campaigns)
    demo = by_name[campaigns[0]]
    summary = await db.fetchrow("SELECT * FROM campaign_summary WHERE campaign = $1", campaigns[0])
    assert demo["contacts"] == summary["contacts"] == 80
    assert demo["outcomes"]["completed"] == summary["completed"]
    assert demo["outcomes"]["busy"] == summary["busy"] and demo["progress"] == 1.0
    assert demo["channels"]["limit"] == 20 and demo["rate"]["limit_per_s"] == pytest.approx(50)
    waiting = by_name["waiting-list"]
    assert waiting["status"] == "active" and waiting["states"]["pending"] == 12
    assert waiting["window"]["open"] is True and waiting["next_due"] is not None
    why = await get_json(f"{dashboard}/api/campaigns/waiting-list/waiting")
    assert why["blockers"] == [] and why["waiting"][0]["reason"] == "due now"
    assert why["waiting"][0]["contacts"] == 12
    canceled = await get_json(f"{dashboard}/api/campaigns/never-dialed/waiting")
    assert canceled["blockers"] == ["campaign canceled: canceled by user"]
    assert canceled["waiting"] == []
    assert data["as_of"] and by_name["never-dialed"]["states"]["canceled"] == 1500


async def test_control_needs_the_admin_token(dashboard: str, db) -> None:
    url = f"{dashboard}/api/campaigns/waiting-list/pause"
    assert (await post(url, None))[0] == 401
    assert (await post(url, "wrong"))[0] == 401
    assert await db.fetchval("SELECT status FROM campaigns WHERE name = 'waiting-list'") == "active"
    status, body = await post(url, TOKEN)
    assert status == 200 and "active -> paused" in body["message"]
    assert await db.fetchval("SELECT status FROM campaigns WHERE name = 'waiting-list'") == "paused"
    assert (await post(f"{dashboard}/api/campaigns/waiting-list/resume", TOKEN))[0] == 200
    assert (await post(f"{dashboard}/api/campaigns/nope/pause", TOKEN))[0] == 404
    assert (await post(f"{dashboard}/api/campaigns/waiting-list/explode", TOKEN))[0] == 404


async def test_control_is_off_without_an_admin_token(database_url: str, campaigns) -> None:
    async with open_pool(database_url, size=2) as pool:
        server = TestServer(create_app(Receiver(pool, {}, "")), port=free_port())
        await server.start_server()
        try:
            url = f"http://127.0.0.1:{server.port}/api/campaigns/waiting-list/pause"
            status, body = await post(url, "")
            assert status == 403 and "admin_token" in body["detail"]
        finally:
            await server.close()


async def test_answers_are_problems_and_the_page_has_its_icon(dashboard: str) -> None:
    """The control API answers as /api/v1 does (RFC 9457 problem documents); /favicon.ico is
    served (no 404 in the browser's console)."""
    async with aiohttp.ClientSession() as session:
        url = f"{dashboard}/api/campaigns/waiting-list/pause"
        async with session.post(url) as response:
            assert response.status == 401
            assert response.content_type == "application/problem+json"
            body = await response.json(content_type=None)
            assert body["status"] == 401 and "admin token" in body["detail"]
        async with session.get(f"{dashboard}/api/campaigns/nope/charts") as response:
            assert response.status == 404
            assert (await response.json(content_type=None))["detail"] == "no such campaign: nope"
        async with session.get(f"{dashboard}/favicon.ico") as response:
            assert response.status == 200 and response.content_type == "image/svg+xml"
            assert (await response.text()).startswith("<svg")


async def exhausted_webhook(db) -> None:
    """A delivery that used up its retries: the page says so in one line."""
    from tests.cli.test_webhooks import exhausted_event

    await exhausted_event(db)


def chromium() -> str:
    """Debian's Chromium (.ci/run installs it); $DIALER_CHROMIUM overrides."""
    path = os.environ.get("DIALER_CHROMIUM") or shutil.which("chromium")
    assert path, "Chromium is missing: bash .ci/run installs it (apt-get install chromium)"
    return path


async def test_page_in_a_real_browser(dashboard: str, campaigns: list[str], db, tmp_path) -> None:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium(),
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 500})
            requested: list[str] = []
            page.on("request", lambda request: requested.append(request.url))
            await exhausted_webhook(db)
            await page.goto(dashboard)
            rows = page.locator("tr.campaign")
            await rows.first.wait_for()
            hooks = await page.locator("#hooks").inner_text()
            assert "webhooks to crm: 1 events gave up" in hooks, hooks
            assert await rows.count() == len(campaigns)
            demo_row = page.locator(f'tr.campaign[data-name="{campaigns[0]}"]')
            done = await db.fetchval(
                "SELECT done FROM campaign_summary WHERE campaign = $1", campaigns[0]
            )
            assert f"{done} done / 80 contacts" in await demo_row.inner_text()
            shot = await page.locator("#list").screenshot(path=str(tmp_path / "table.png"))
            # A campaign canceled before it dialed: no green, thousands separated.
            canceled = page.locator('tr.campaign[data-name="never-dialed"]')
            said = await canceled.inner_text()
            assert "0 done / 1,500 contacts" in said and "1,500 canceled" in said, said
            assert await canceled.locator(".progress .p-done").count() == 0
            bar = await canceled.locator(".progress").screenshot()
            assert green_pixels(bar) == 0
            assert await demo_row.locator(".progress .p-done").count() == 1
            assert green_pixels(await demo_row.locator(".progress").screenshot()) > 0
            # The header says when its figures were read.
            assert "figures as of" in await page.locator("#updated").inner_text()
            # A control refused for want of a token stays said across the list's refreshes.
            await page.fill("#token", "")
            await page.dispatch_event("#token", "change")
            before = int(await page.locator("body").get_attribute("data-refreshes") or 0)
            await page.locator(
                'tr.campaign[data-name="waiting-list"] button[data-act="pause"]'
            ).click()
            # three more answers drawn (each sets the counter; it stays ~2 s at each value)
            await page.locator(f'body[data-refreshes="{before + 3}"]').wait_for(
                state="attached", timeout=20_000
            )
            refused = page.locator("#control-error")
            assert await refused.is_visible()
            assert "pause waiting-list: bad or missing admin token" in await refused.inner_text()
            await page.locator("#control-dismiss").click()
            assert not await refused.is_visible()
            # The page refreshes itself: a pause through the page shows up without a reload.
            await page.fill("#token", TOKEN)
            await page.dispatch_event("#token", "change")
            waiting = page.locator('tr.campaign[data-name="waiting-list"]')
            await waiting.locator('button[data-act="pause"]').click()
            await waiting.locator(".badge.paused").wait_for(timeout=10_000)
            status = await db.fetchval("SELECT status FROM campaigns WHERE name = 'waiting-list'")
            assert status == "paused"
            await waiting.locator('button[data-act="resume"]').click()
            await waiting.locator(".badge.active").wait_for(timeout=10_000)
        finally:
            await browser.close()
    assert all(url.startswith(dashboard) for url in requested), requested  # no external asset
    image = Image.open(io.BytesIO(shot)).convert("RGB")
    assert image.width > 800 and image.height > 100
    colors = image.getcolors(maxcolors=1 << 16) or []
    assert len(colors) > 20  # rendered rows, not a blank page
    near_green = sum(
        count
        for count, rgb in colors
        if all(abs(a - b) < 12 for a, b in zip(rgb, COMPLETED_GREEN, strict=True))
    )
    assert near_green > 200  # the completed part of the outcome and progress bars


def green_pixels(png: bytes) -> int:
    image = Image.open(io.BytesIO(png)).convert("RGB")
    return sum(
        count
        for count, rgb in image.getcolors(maxcolors=1 << 16) or []
        if all(abs(a - b) < 12 for a, b in zip(rgb, COMPLETED_GREEN, strict=True))
    )


async def test_one_unreadable_stored_campaign_does_not_take_the_dashboard_down(
    own_database_url: str, own_db, tmp_path
) -> None:
    """A spec written by an older version (a window start as a number, which loads no more)
    shows as that campaign's error; the other campaigns still render."""
    from dialer.campaign_spec import load_campaign_file

    good = load_campaign_file(write_campaign(tmp_path, "fine-one", 1)).spec.to_json()
    broken = dict(good) | {"name": "old-one", "window": dict(good["window"]) | {"start": 9}}
    for spec in (good, broken):
        await own_db.execute(
            "INSERT INTO campaigns (name, account, spec) VALUES ($1, 'sim-main', $2)",
            spec["name"],
            spec,
        )
    async with open_pool(own_database_url, size=2) as pool:
        server = TestServer(create_app(Receiver(pool, {}, public_url="")))
        await server.start_server()
        try:
            url = f"http://127.0.0.1:{server.port}/api/campaigns"
            async with aiohttp.ClientSession() as session, session.get(url) as response:
                assert response.status == 200
                shown = {c["name"]: c for c in (await response.json())["campaigns"]}
        finally:
            await server.close()
    assert "window" in shown["fine-one"] and "error" not in shown["fine-one"]
    assert "not readable" in shown["old-one"]["error"]


async def test_campaign_page_draws_its_pictures(
    dashboard: str, campaigns: list[str], db, tmp_path
) -> None:
    """The campaign page: requests per minute against the account's limit, channels against
    theirs, outcomes by hour, drawn as SVG from the server's own JSON (no external asset), with
    the figures the database holds. DIALER_SCREENSHOT=path keeps the picture (the README's)."""
    from playwright.async_api import async_playwright

    demo = campaigns[0]
    row = await db.fetchrow("SELECT id, account FROM campaigns WHERE name = $1", demo)
    requests = await db.fetchval(
        """SELECT count(*) FROM attempts WHERE account = $1
           AND requested_at >= date_trunc('minute', now()) - interval '59 minutes'""",
        row["account"],
    )
    attempts = await db.fetchval(
        "SELECT count(*) FROM attempts WHERE campaign_id = $1 AND requested_at IS NOT NULL",
        row["id"],
    )
    minutes = await db.fetch(
        """SELECT to_char(m AT TIME ZONE 'UTC', 'HH24:MI') AS label
           FROM generate_series(date_trunc('minute', now()) - interval '59 minutes',
                                date_trunc('minute', now()), interval '1 minute') AS m"""
    )
    hours = await db.fetch(
        """SELECT to_char(h, 'HH24:MI') AS label
           FROM generate_series(date_trunc('hour', now() AT TIME ZONE 'UTC') - interval '23h',
                                date_trunc('hour', now() AT TIME ZONE 'UTC'), interval '1h') AS h"""
    )
    limits_in_db = await db.fetchrow(
        "SELECT configured_rate_per_s * 60 AS requests, channels FROM accounts WHERE name = $1",
        row["account"],
    )
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium(), args=["--no-sandbox", "--disable-gpu", "--no-first-run"]
        )
        try:
            page = await browser.new_page(viewport={"width": 1100, "height": 700})
            requested: list[str] = []
            page.on("request", lambda request: requested.append(request.url))
            await page.goto(f"{dashboard}/#campaign={demo}")
            await page.locator("#chart-hours rect").first.wait_for()
            # the page draws the charts, then reads the waiting contacts, then says the time of
            # its figures: everything below is read once it has
            await page.wait_for_function(
                "() => document.getElementById('updated').textContent.startsWith('figures as of')"
            )
            drawn = {}
            for chart in ("requests", "channels", "hours"):
                titles = await page.locator(f"#chart-{chart} rect title").all_text_contents()
                drawn[chart] = sum(int(t.rsplit(" ", 1)[-1]) for t in titles)
            limits = await page.locator("svg line title").all_text_contents()
            labels = await page.locator("svg text.limit").all_text_contents()
            axes = {
                chart: {
                    "x": await page.locator(f"#chart-{chart} text.tick-x").all_text_contents(),
                    "y": await page.locator(f"#chart-{chart} text.tick-y").all_text_contents(),
                }
                for chart in ("requests", "channels", "hours")
            }
            peak = max(
                int(t.rsplit(" ", 1)[-1])
                for t in await page.locator("#chart-requests rect title").all_text_contents()
            )
            svg_width = await page.locator("#chart-hours").evaluate("e => e.clientWidth")
            widths = [
                float(w or 0)
                for w in await page.locator("#chart-hours rect").evaluate_all(
                    "rects => rects.map(r => r.getAttribute('width'))"
                )
            ]
            # A label is drawn at its own size: the SVG is not stretched to the page's width.
            box = await page.locator("#chart-requests text.limit").bounding_box()
            line = await page.locator("#chart-requests line[stroke-dasharray]").bounding_box()
            header = await page.locator("#updated").inner_text()
            reasons = await page.locator("#waiting-rows").inner_text()
            shot = await page.locator("#detail").screenshot(
                path=os.environ.get("DIALER_SCREENSHOT") or str(tmp_path / "campaign.png")
            )
            await page.goto(f"{dashboard}/#campaign=nope")
            await page.locator("#missing").wait_for()
            missing = await page.locator("#missing").inner_text()
            charts_shown = await page.locator("#charts").is_visible()
        finally:
            await browser.close()
    assert drawn["requests"] == requests > 0
    assert drawn["hours"] == attempts
    assert drawn["channels"] > 0
    assert len(limits) == 2 and all(t.startswith("limit ") for t in limits)
    assert sorted(labels) == sorted(
        [f"limit {int(limits_in_db['requests']):,}", f"limit {limits_in_db['channels']:,}"]
    )
    # The axes say what the database says: the minutes of the last hour, the 24 hours of the
    # campaign's zone (UTC), values from 0 to a top above the highest bar and the limit.
    # The page read the clock between the two readings here: a minute may have turned.
    minutes_after = await db.fetch(
        """SELECT to_char(m AT TIME ZONE 'UTC', 'HH24:MI') AS label
           FROM generate_series(date_trunc('minute', now()) - interval '59 minutes',
                                date_trunc('minute', now()), interval '1 minute') AS m"""
    )
    for chart in ("requests", "channels"):
        x = axes[chart]["x"]
        assert any(
            x[0] == reading[0]["label"] and x[-1] == reading[-1]["label"]
            for reading in (minutes, minutes_after)
        ), (axes[chart], minutes[0]["label"], minutes_after[0]["label"])
        ticks = [int(t.replace(",", "")) for t in axes[chart]["y"]]
        assert ticks[0] == 0 and ticks == sorted(ticks) and len(ticks) >= 3
    top = int(axes["requests"]["y"][-1].replace(",", ""))
    assert top >= max(peak, int(limits_in_db["requests"]))
    hours_after = await db.fetch(
        """SELECT to_char(h, 'HH24:MI') AS label
           FROM generate_series(date_trunc('hour', now() AT TIME ZONE 'UTC') - interval '23h',
                                date_trunc('hour', now() AT TIME ZONE 'UTC'), interval '1h') AS h"""
    )
    assert any(
        axes["hours"]["x"][0] == reading[0]["label"]
        and axes["hours"]["x"][-1] == reading[-1]["label"]
        for reading in (hours, hours_after)
    ), axes["hours"]
    assert all(0 < w <= svg_width / 24 for w in widths), (widths, svg_width)  # one hour, 1/24
    assert box is not None and box["height"] < 20 and box["width"] < 120
    assert line is not None and box["y"] + box["height"] <= line["y"] + 1  # above, not crossed
    assert header.startswith("figures as of"), header
    assert reasons == "nothing is dialed: campaign completed", reasons
    assert missing == "no such campaign: nope" and not charts_shown
    assert all(url.startswith(dashboard) for url in requested), requested
    image = Image.open(io.BytesIO(shot)).convert("RGB")
    assert len(image.getcolors(maxcolors=1 << 16) or []) > 20
