"""The OpenAPI description is true of the live server: schemathesis generates requests from
it against a real `dialer serve` on a real database (a campaign and contacts exist, so the
examples reach the core logic) and checks that no answer is a 5xx and every answer conforms
to the document (status codes, content types, headers, bodies)."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from dialer.api.openapi import EXAMPLE_CAMPAIGN, EXAMPLE_CSV
from tests.dispatch.test_end_to_end import env_for
from tests.processes import background, dialer_command, free_port, wait_for_http

pytestmark = pytest.mark.timeout(300)
ROOT = str(Path(__file__).resolve().parents[2])
TOKEN = "schemathesis-token-0123456789"
CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,"
    "response_headers_conformance,response_schema_conformance"
)


def request(method: str, url: str, body: bytes, kind: str) -> int:
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": kind}
    with urllib.request.urlopen(urllib.request.Request(url, body, headers, method=method)) as r:
        return r.status


def test_schemathesis_finds_no_5xx_and_no_answer_off_the_schema(
    own_database_url: str, tmp_path: Path
) -> None:
    port = free_port()
    config = tmp_path / "dialer.toml"
    config.write_text(
        f'listen = "127.0.0.1:{port}"\ndefault_region = "IN"\n[api]\n'
        f'tokens = [{{ name = "fuzz", token = "{TOKEN}", scopes = ["read", "write"] }}]\n'
        '[accounts.main]\nkind = "sim"\nbase_url = "http://127.0.0.1:9"\nsecret = "fuzz-sim"\n'
        'rate = "1/s"\nchannels = 1\n'
    )
    env = env_for(own_database_url, config)
    base = f"http://127.0.0.1:{port}/api/v1"
    with background(dialer_command("serve"), tmp_path, env, tmp_path / "serve.log"):
        wait_for_http(f"http://127.0.0.1:{port}/healthz")
        body = json.dumps(EXAMPLE_CAMPAIGN).encode()
        assert request("PUT", f"{base}/campaigns/api-example", body, "application/json") == 201
        contacts = EXAMPLE_CSV.encode()
        assert (
            request("POST", f"{base}/campaigns/api-example/contacts", contacts, "text/csv") == 200
        )
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "schemathesis.cli",
                "run",
                f"{base}/openapi.json",
                "--header",
                f"Authorization: Bearer {TOKEN}",
                "--checks",
                CHECKS,
                "--max-examples",
                "40",
                "--seed",
                "14",
                # One worker: CPython 3.11.7 can fail parsing a lambda's source in two threads
                # at once ("AST constructor recursion depth mismatch", cpython#106905), which
                # schemathesis reports as its own runtime error.
                "--workers",
                "1",
                # A request that takes long on a busy machine is not a failure here (a hang
                # still is): schemathesis's default is 10 s, under which a 10,000-event
                # consents import once timed out in CI.
                "--request-timeout",
                "60",
            ],
            cwd=tmp_path,
            env=env | {"SCHEMATHESIS_HOOKS": "tests.api.schemathesis_hooks", "PYTHONPATH": ROOT},
            capture_output=True,
            text=True,
            timeout=240,
        )
        log = (tmp_path / "serve.log").read_text()
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "failed" not in done.stdout.split("SUMMARY")[-1]
    assert "api request failed" not in log, log[-3000:]  # the API's own 5xx path
    # aiohttp logs the requests it cannot parse (a NUL in a header) as it answers them 400
    tracebacks = log.count("Traceback")
    assert tracebacks == log.count("aiohttp.http_exceptions.BadHttpMessage: 400"), log[-3000:]
