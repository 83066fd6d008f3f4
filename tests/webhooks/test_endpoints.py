"""Webhook endpoints: names of their own (never a URL's credentials), URLs masked wherever
they could be shown, ids unique across databases, and endpoints removed from dialer.toml
forgotten with their waiting rows."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import asyncpg
import pytest
from click.testing import CliRunner

from dialer.cli import cli
from dialer.config import load_config
from dialer.db import webhooks
from dialer.redaction import redact
from tests.conftest import fresh_database

SECRET = "whsec_" + "Q" * 43 + "="
URL = "https://ops:hunter2pass@crm.example.com:8443/hooks/tok_ABCDEF123456?key=QUERYSECRET99"
CREDENTIALS = ("hunter2pass", "tok_ABCDEF123456", "QUERYSECRET99", "/hooks/tok_ABCDEF123456")


@pytest.fixture
def configured(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DIALER_DATABASE_URL", raising=False)
    path = tmp_path / "dialer.toml"
    path.write_text(f'[[webhooks]]\nurl = "{URL}"\nsecret = "{SECRET}"\n')
    monkeypatch.setenv("DIALER_CONFIG", str(path))
    return path


def test_an_unnamed_endpoint_is_named_by_its_host_and_its_url_is_masked(configured: Path) -> None:
    hook = load_config().webhooks[0]
    assert hook.endpoint == "crm.example.com"
    assert hook.shown_url == "https://crm.example.com:8443/****"
    said = redact(f"ClientConnectorError: cannot connect to {URL}; posted to {hook.url}")
    assert not any(secret in said for secret in CREDENTIALS), said
    shown = CliRunner().invoke(cli, ["config", "show"], catch_exceptions=False)
    assert shown.exit_code == 0, shown.output
    document = json.loads(shown.output)
    assert document["webhooks"][0]["url"] == "https://crm.example.com:8443/****"
    assert document["webhooks"][0]["name"] == "crm.example.com"
    assert not any(secret in shown.output for secret in CREDENTIALS), shown.output


def test_admin_token_needs_sixteen_characters(configured: Path) -> None:
    configured.write_text('admin_token = "short-token"\n')
    result = CliRunner().invoke(cli, ["config", "show"])
    assert result.exit_code == 2
    assert "admin_token" in result.output and "16 characters" in result.output
    assert "short-token" not in result.output


def test_webhook_ids_differ_between_databases() -> None:
    async def install(url: str) -> str:
        conn = await asyncpg.connect(url)
        try:
            return await webhooks.install_id(conn)
        finally:
            await conn.close()

    with fresh_database("install_a") as first, fresh_database("install_b") as second:
        ids = [asyncio.run(install(first)), asyncio.run(install(second))]
    assert ids[0] != ids[1] and all(len(i) == 32 for i in ids)


async def test_a_removed_endpoint_stops_collecting_and_its_rows_go(db) -> None:
    await webhooks.register(db, {"kept": ["campaign.finished"], "removed": ["campaign.finished"]})
    campaign = await db.fetchval(
        """INSERT INTO campaigns (name, account, spec) VALUES ('hooked', 'x', '{}')
           RETURNING id"""
    )
    await webhooks.record_finished(db, [campaign])
    assert await deliveries(db) == {"kept": 1, "removed": 1}
    # No process has named `removed` for over an hour: no more events for it...
    await db.execute(
        "UPDATE webhook_endpoints SET seen_at = now() - interval '61 minutes'"
        " WHERE name = 'removed'"
    )
    await webhooks.record_finished(db, [campaign])
    assert await deliveries(db) == {"kept": 2, "removed": 1}
    # ...and once a process says which it has, `removed` and its waiting rows are forgotten.
    assert await webhooks.keep_endpoints(db, ["kept"]) == 1
    assert await deliveries(db) == {"kept": 2}
    assert await db.fetchval("SELECT array_agg(name) FROM webhook_endpoints") == ["kept"]
    await webhooks.record_finished(db, [campaign])
    assert await deliveries(db) == {"kept": 3}


async def test_deliveries_under_an_earlier_versions_name_follow_the_new_one(db) -> None:
    legacy = "crm.example.com:8443/hooks/tok_abcdef123456"
    await webhooks.register(db, {legacy: ["campaign.finished"]})
    campaign = await db.fetchval(
        """INSERT INTO campaigns (name, account, spec) VALUES ('renamed', 'x', '{}')
           RETURNING id"""
    )
    await webhooks.record_finished(db, [campaign])
    await webhooks.register(
        db, {"crm.example.com": ["campaign.finished"]}, {legacy: "crm.example.com"}
    )
    waiting = await deliveries(db)
    assert waiting["crm.example.com"] == 1 and legacy not in waiting
    names = await db.fetchval("SELECT array_agg(name) FROM webhook_endpoints")
    assert legacy not in names  # nothing of the old name (its path held a token) is kept


async def deliveries(db) -> dict[str, int]:
    rows = await db.fetch(
        "SELECT endpoint, count(*) FROM webhook_deliveries WHERE state = 'pending' GROUP BY 1"
    )
    return dict(rows)
