"""One error hierarchy: a type says what went wrong, and one table each maps types to exit
codes and to HTTP statuses; nothing decides by reading an error's text."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dialer.db.outage import DatabaseGone
from dialer.errors import (
    BodyError,
    ConfigError,
    ConflictError,
    DialerError,
    ForbiddenError,
    InputError,
    NotFoundError,
    ProviderError,
    exit_code_of,
    http_status_of,
)
from dialer.providers.errors import Ambiguous, Forbidden, NotDialed, RateLimited, Rejected

PACKAGE = Path(__file__).resolve().parents[1] / "dialer"


@pytest.mark.parametrize(
    ("error", "exit_code", "status"),
    [
        (DialerError("x"), 1, 500),
        (ConfigError("x"), 2, 500),
        (InputError("x"), 2, 400),
        (NotFoundError("no such campaign: x"), 2, 404),
        (BodyError("x"), 2, 400),
        (ConflictError("x"), 2, 409),
        (ForbiddenError("x"), 1, 403),
        (Forbidden("bad token"), 1, 403),
        (RateLimited("x", 3.0), 1, 502),
        (Rejected("x", account_wide=True), 1, 502),
        (Ambiguous("x"), 1, 502),
        (NotDialed("x"), 1, 502),
        (DatabaseGone("x"), 1, 500),
    ],
)
def test_each_type_has_its_exit_code_and_status(error, exit_code, status) -> None:
    assert isinstance(error, DialerError)
    assert (exit_code_of(error), http_status_of(error)) == (exit_code, status)


def test_a_provider_errors_detail_is_its_message() -> None:
    error = ProviderError("token abc in the answer")
    error.detail = "token **** in the answer"  # what adapters do to mask credentials
    assert str(error) == error.message == error.detail == "token **** in the answer"


def test_no_code_reads_an_errors_text_to_decide() -> None:
    pattern = re.compile(r"""["'][^"']*["']\s+in\s+(str\(\w+\)|\w+\.(message|detail|args))""")
    found = [
        f"{path.relative_to(PACKAGE)}:{number}"
        for path in PACKAGE.rglob("*.py")
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert not found, found
