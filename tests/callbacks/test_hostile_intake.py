"""Callback intake against junk, forgeries and authentic-but-broken callbacks, over real HTTP
into a real database: never a 5xx, nothing half-applied, nothing an attempt did not earn."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import asyncpg
import pytest

from dialer.sim.server import sign
from tests.callbacks.test_callbacks import (
    ADAPTER,
    SECRET,
    attempt_row,
    events,
    new_attempt,
    server,  # noqa: F401  (the fixture)
)

TOKEN = ADAPTER.callback_token


async def raw_post(
    port: int,
    path: str,
    body: bytes,
    *,
    content_type: str = "application/json",
    signed: bool = True,
    token: str | None = TOKEN,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict]:
    query = f"?token={token}" if token is not None else ""
    all_headers = {"Content-Type": content_type} | (headers or {})
    if signed:
        all_headers["X-Sim-Signature"] = sign(SECRET, path, body)
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"http://127.0.0.1:{port}{path}{query}", data=body, headers=all_headers
        ) as response,
    ):
        text = await response.text()
        try:
            document = json.loads(text)
        except ValueError:
            document = {"text": text}
        return response.status, document


async def socket_request(port: int, request: bytes) -> int:
    """Send raw bytes (whatever an HTTP client would refuse to send) and read the status."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), 10)
    finally:
        writer.close()
    return int(line.split()[1])


async def stored_events(db: asyncpg.Connection, attempt_id: int) -> list[asyncpg.Record]:
    return await db.fetch(
        "SELECT status, held, problem, payload FROM call_events WHERE attempt_id = $1 ORDER BY id",
        attempt_id,
    )


@pytest.mark.parametrize(
    "path",
    [
        "/callbacks/sim-main/\u0663",  # an Arabic-Indic digit: isdigit(), but not our id
        "/callbacks/sim-main/99999999999999999999999",  # past bigint
        "/callbacks/sim-main/0",
        "/callbacks/sim-main/-1",
        "/callbacks/%00",
        "/callbacks/no-such-account/1",
        "/callbacks/sim-main/1/extra",
    ],
)
async def test_odd_paths_get_a_4xx_not_a_5xx(server, path: str) -> None:  # noqa: F811
    status, _ = await raw_post(server.port, path, b"{}")
    assert 400 <= status < 500


async def test_invalid_utf8_in_headers_gets_a_4xx(server, db, tmp_path) -> None:  # noqa: F811
    attempt = await new_attempt(db, tmp_path)
    body = json.dumps(events(attempt, "busy", "U1")[-1]).encode()
    request = (
        (
            f"POST /callbacks/sim-main/{attempt}?token={TOKEN} HTTP/1.1\r\n"
            f"Host: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n"
        ).encode()
        + b"X-Sim-Signature: \xff\xfe\xc3(\r\nConnection: close\r\n\r\n"
        + body
    )
    assert 400 <= await socket_request(server.port, request) < 500
    assert (await attempt_row(db, attempt))["state"] == "accepted"


async def test_token_is_checked_before_the_body_is_parsed(server, db, tmp_path) -> None:  # noqa: F811
    attempt = await new_attempt(db, tmp_path)
    nested = b"[" * 200_000 + b"]" * 200_000
    path = f"/callbacks/sim-main/{attempt}"
    # Without the token the parser never runs: 403, not the 400 a parse would give.
    assert (await raw_post(server.port, path, nested, token="wrong"))[0] == 403
    assert (await raw_post(server.port, path, nested, token=None))[0] == 403
    # With it, a body nested this deep is refused before the JSON parser recurses into it.
    assert (await raw_post(server.port, path, nested))[0] == 400
    assert await stored_events(db, attempt) == []


async def test_multipart_with_a_bogus_charset_or_too_many_parts(server, db, tmp_path) -> None:  # noqa: F811
    attempt = await new_attempt(db, tmp_path)
    path = f"/callbacks/sim-main/{attempt}"
    boundary = "XyZ"
    part = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="status"\r\n'
        "Content-Type: text/plain; charset=no-such-charset\r\n\r\nbusy\r\n"
    )
    bogus = (part + f"--{boundary}--\r\n").encode()
    content_type = f"multipart/form-data; boundary={boundary}"
    assert (await raw_post(server.port, path, bogus, content_type=content_type, token=None))[
        0
    ] == 403
    status, answer = await raw_post(server.port, path, bogus, content_type=content_type)
    assert status == 200 and answer["applied"] is False  # authentic, readable, not an event
    many = ("".join(part for _ in range(500)) + f"--{boundary}--\r\n").encode()
    assert (await raw_post(server.port, path, many, content_type=content_type))[0] == 400
    assert (await attempt_row(db, attempt))["state"] == "accepted"


@pytest.mark.parametrize(
    "change, problem",
    [
        ({"duration": -5}, "duration -5 s out of range"),
        ({"duration": "Infinity"}, "out of range"),
        ({"duration": 1e30}, "out of range"),
        ({"sequence": 2**40}, "sequence number"),
        ({"call_id": "C\u0000NUL"}, "call id"),
        ({"status": "completed\u0000"}, "unknown status"),
        ({"status": "exploded"}, "unknown status"),
    ],
)
async def test_authentic_callback_with_absurd_values_is_held_not_applied(
    server,  # noqa: F811
    db,
    tmp_path,
    change: dict,
    problem: str,
) -> None:
    attempt = await new_attempt(db, tmp_path)
    final = events(attempt, "completed", f"H{attempt}")[-1] | change
    body = json.dumps(final).replace('"Infinity"', "Infinity").encode()
    path = f"/callbacks/sim-main/{attempt}"
    status, answer = await raw_post(server.port, path, body)
    assert status == 200, answer  # kept: the provider must not retry it forever
    assert answer["applied"] is False and problem in answer["problem"]
    again = await raw_post(server.port, path, body)
    assert again[0] == 200 and again[1]["stored"] is False  # a redelivery is stored once
    row = await attempt_row(db, attempt)
    assert (row["state"], row["outcome"], row["contact"]) == ("accepted", None, "dialing")
    assert row["slot"] is not None  # still live: the reconciler will ask the provider
    (event,) = await stored_events(db, attempt)
    assert event["held"] and problem in event["problem"]
    # A correct delivery of the same event afterwards still settles the attempt.
    good = json.dumps(events(attempt, "completed", f"H{attempt}")[-1]).encode()
    assert (await raw_post(server.port, path, good))[0] == 200
    assert (await attempt_row(db, attempt))["state"] == "completed"


async def test_nul_bytes_and_lone_surrogates_in_other_fields_are_cleaned_and_applied(
    server,  # noqa: F811
    db,
    tmp_path,
) -> None:
    attempt = await new_attempt(db, tmp_path)
    final = events(attempt, "busy", f"S{attempt}")[-1]
    final |= {"note": "a\u0000b", "surrogate": "\ud800x", "\u0000key": 1, "huge": 10**30}
    final |= {"unknown_field": {"nested": [1, 2, {"deeper": "ok"}]}}
    body = json.dumps(final).encode()  # json.dumps writes \u0000 and \ud800 escapes
    status, answer = await raw_post(server.port, f"/callbacks/sim-main/{attempt}", body)
    assert status == 200 and answer["stored"] is True and "applied" not in answer
    assert (await attempt_row(db, attempt))["state"] == "busy"
    (event,) = await stored_events(db, attempt)
    assert not event["held"]
    payload = event["payload"]
    assert payload["note"] == "ab" and payload["surrogate"] == "?x" and payload["key"] == 1
    assert payload["huge"] == str(10**30) and payload["unknown_field"]["nested"][2]
    assert "cleaned" in event["problem"] if event["problem"] else True


async def test_a_call_id_of_another_attempt_never_settles_the_attempt_in_the_url(
    server,  # noqa: F811
    db,
    tmp_path,
) -> None:
    victim = await new_attempt(db, tmp_path)
    other = await new_attempt(db, tmp_path)
    await db.execute("UPDATE attempts SET provider_call_id = 'OTHER-CALL' WHERE id = $1", other)
    path = f"/callbacks/sim-main/{victim}"
    for event in events(victim, "completed", "OTHER-CALL"):
        status, _answer = await raw_post(server.port, path, json.dumps(event).encode())
        assert status == 200
    assert (await attempt_row(db, victim))["state"] == "accepted"
    assert (await attempt_row(db, other))["state"] == "accepted"  # not settled sideways either
    held = await stored_events(db, victim)
    assert len(held) == 4 and all(e["held"] for e in held)
    assert all("is not this attempt's" in e["problem"] for e in held)
    # The attempt's own call id still works; and once it has one, a different one is refused.
    await db.execute("UPDATE attempts SET provider_call_id = 'MINE' WHERE id = $1", victim)
    stray = json.dumps(events(victim, "busy", "STRAY")[-1]).encode()
    assert (await raw_post(server.port, path, stray))[1]["applied"] is False
    mine = json.dumps(events(victim, "busy", "MINE")[-1]).encode()
    assert (await raw_post(server.port, path, mine))[0] == 200
    assert (await attempt_row(db, victim))["state"] == "busy"


async def test_credentials_echoed_in_a_callback_are_never_stored(server, db, tmp_path) -> None:  # noqa: F811
    """A provider echoing our secret key (DIDforSale's secretKey) or the callback URL with its
    token: the stored payload has neither."""
    attempt = await new_attempt(db, tmp_path)
    final = events(attempt, "busy", f"E{attempt}")[-1]
    final |= {"secretKey": SECRET, "url": f"https://x.example/cb?token={TOKEN}", SECRET: 1}
    status, _ = await raw_post(
        server.port, f"/callbacks/sim-main/{attempt}", json.dumps(final).encode()
    )
    assert status == 200
    (event,) = await stored_events(db, attempt)
    stored = json.dumps(event["payload"])
    assert SECRET not in stored and TOKEN not in stored and "****" in stored
