"""The provider HTTP client as a hostile or broken provider meets it: redirects are never
followed, answers are capped, and no credential reaches a person in any shape."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from urllib.parse import quote, quote_plus

import aiohttp
import pytest
from aiohttp import web

from dialer.providers.http import MAX_ANSWER_BYTES, HttpRequest, send
from dialer.redaction import forms
from tests.fakes.twilio import account_toml
from tests.processes import free_port
from tests.providers.harness import Workspace, attempts_of

pytestmark = pytest.mark.timeout(300)

SID, TOKEN = "AC" + "b2" * 16, "s3cret+/token=with&odd chars"
TWIML = 'connect_to = "https://dialer.example.com/twiml/hello.xml"'


class Recorder:
    """A local server answering every request with `respond`, keeping what it was sent."""

    def __init__(self, respond) -> None:
        self.requests: list[dict] = []
        self.respond = respond
        self.app = web.Application()
        self.app.router.add_route("*", "/{tail:.*}", self._handle)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.requests.append({"path": request.path, "headers": dict(request.headers), "body": body})
        return await self.respond(request, body)


async def start(recorder: Recorder) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(recorder.app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


async def test_a_redirect_is_never_followed_and_pauses_the_account(
    own_database_url: str, tmp_path: Path, own_db
) -> None:
    thief = Recorder(lambda request, body: _ok())
    thief_runner, thief_url = await start(thief)

    async def redirect(request: web.Request, body: bytes) -> web.Response:
        return web.Response(status=307, headers={"Location": f"{thief_url}{request.path_qs}"})

    moved = Recorder(redirect)
    runner, url = await start(moved)
    try:
        work = Workspace(tmp_path, own_database_url, free_port())
        work.configure("tw", account_toml(url, SID, TOKEN, channels=2))
        await work.load("moved", "tw", count=5, extra=TWIML)
        code, output = await work.dialer("run", "moved")
    finally:
        await runner.cleanup()
        await thief_runner.cleanup()
    assert code == 2, output
    assert "redirect" in output and "base_url" in output
    assert thief.requests == []  # neither the credentials nor a number went anywhere else
    assert 1 <= len(moved.requests) <= 2  # the channels' worth in flight at most, none re-sent
    status = await own_db.fetchrow("SELECT status, status_reason FROM campaigns")
    assert (
        status["status"] == "paused" and "check the account's base_url" in status["status_reason"]
    )
    attempts = await attempts_of(own_db, "moved")
    assert {a["state"] for a in attempts} == {"not_dialed"}  # nothing placed, nothing lost
    states = await own_db.fetch("SELECT DISTINCT state FROM contacts")
    assert [r["state"] for r in states] == ["pending"]


async def _ok() -> web.Response:
    return web.json_response({"sid": "CA1"})


async def test_an_answer_is_read_up_to_one_mib_and_no_further() -> None:
    sent = 0
    stopped = asyncio.Event()  # the server found the connection dropped (or sent it all)

    async def flood(request: web.Request, body: bytes) -> web.StreamResponse:
        nonlocal sent
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        chunk = b"x" * 65536
        try:
            for _ in range(300 * 16):  # 300 MiB, if anyone read it all
                await response.write(chunk)
                sent += len(chunk)
        except (ConnectionError, RuntimeError):
            pass
        finally:
            stopped.set()
        return response

    runner, url = await start(Recorder(flood))
    try:
        async with aiohttp.ClientSession() as session:
            answer = await send(session, HttpRequest("POST", f"{url}/Calls.json", form=[]))
        await asyncio.wait_for(stopped.wait(), timeout=60)
    finally:
        await runner.cleanup()
    assert answer.truncated and len(answer.body) == MAX_ANSWER_BYTES
    assert sent < 100 * (1 << 20)  # the connection was dropped long before 300 MiB


def test_every_shape_of_a_secret_is_known() -> None:
    shapes = forms(TOKEN, [SID])
    assert {TOKEN, quote(TOKEN, safe=""), quote_plus(TOKEN), json.dumps(TOKEN)[1:-1]} <= shapes
    assert base64.b64encode(f"{SID}:{TOKEN}".encode()).decode() in shapes


async def test_credentials_echoed_by_a_provider_never_reach_a_person(
    own_database_url: str, tmp_path: Path, own_db
) -> None:
    """A provider refusing the account with an error that quotes the request back: the
    Authorization header (base64), the form (URL-encoded) and a JSON-escaped copy."""

    async def refuse(request: web.Request, body: bytes) -> web.Response:
        message = (
            f"bad credentials: {request.headers.get('Authorization')} body={body.decode()} "
            f"json={json.dumps({'token': TOKEN})} raw={TOKEN}"
        )
        return web.json_response({"code": 20003, "message": message, "status": 401}, status=401)

    runner, url = await start(Recorder(refuse))
    try:
        work = Workspace(tmp_path, own_database_url, free_port())
        work.configure("tw", account_toml(url, SID, TOKEN, channels=1))
        (tmp_path / "dialer.toml").write_text(
            (tmp_path / "dialer.toml")
            .read_text()
            .replace("\n\n[accounts", '\nadmin_token = "dash-admin-secret"\n\n[accounts', 1)
        )
        await work.load("echo", "tw", count=3, extra=TWIML)
        code, run_output = await work.dialer("run", "echo", "--log-format", "json")
        async with (
            work.serve(),
            aiohttp.ClientSession() as session,
            session.get(f"{work.callback_base}/api/campaigns") as response,
        ):
            dashboard = await response.text()
        code_show, shown = await work.dialer("config", "show")
    finally:
        await runner.cleanup()
    assert code == 2, run_output
    assert "bad credentials" in run_output  # the provider's words are kept, masked
    errors = " ".join(a["error"] or "" for a in await attempts_of(own_db, "echo"))
    reason = await own_db.fetchval("SELECT status_reason FROM campaigns")
    assert "bad credentials" in reason and "****" in reason
    pair = base64.b64encode(f"{SID}:{TOKEN}".encode()).decode()
    for text in (run_output, errors, reason, dashboard, shown, work.serve_log()):
        for shape in (TOKEN, quote_plus(TOKEN), quote(TOKEN, safe=""), pair, "dash-admin-secret"):
            assert shape not in text, (shape, text[:2000])
    assert code_show == 0


async def test_config_show_masks_a_password_in_the_database_url_query(run_cli) -> None:
    url = "postgresql://app@db.example.com/dialer?sslmode=require&password=hunter2-query"
    result = run_cli("config", "show", env={"DIALER_DATABASE_URL": url})
    assert result.exit_code == 0
    assert "hunter2-query" not in result.stdout and "password=****" in result.stdout
