"""Keeping credentials out of everything a person can read.

A secret leaks in more shapes than its own: inside a Basic-auth header (base64 of
`user:secret`), URL-encoded in a query string or form, JSON-escaped in a body. Every shape of
every credential the process knows is registered here once (the configuration's secrets, each
adapter's, derived callback tokens) and replaced by `****` in log lines, error messages,
`attempts.error`, stored payloads, the dashboard's JSON and `config show`.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, unquote

MASK = "****"
MIN_SECRET_CHARS = 4  # shorter values would mask ordinary words; no real credential is this short
_known: set[str] = set()
_pattern: re.Pattern[str] | None = None


def forms(secret: str, users: Iterable[str] = ()) -> set[str]:
    """Every way `secret` can be written in text we produce or receive."""
    shapes = {
        secret,
        quote(secret, safe=""),
        quote_plus(secret),
        json.dumps(secret)[1:-1],
        base64.b64encode(secret.encode()).decode(),
    }
    for user in users:
        pair = f"{user}:{secret}".encode()
        shapes.add(base64.b64encode(pair).decode())
        shapes.add(base64.urlsafe_b64encode(pair).decode())
    return {shape for shape in shapes if len(shape) >= MIN_SECRET_CHARS}


def remember(*secrets: str | None, users: Iterable[str] = ()) -> None:
    """Register credentials (and, for Basic auth, the user names they pair with)."""
    global _pattern
    users = [u for u in users if u]
    added = set()
    for secret in secrets:
        if secret and len(secret) >= MIN_SECRET_CHARS:
            added |= forms(secret, users)
    if added - _known:
        _known.update(added)
        ordered = sorted(_known, key=len, reverse=True)  # longest first: no partial masks
        _pattern = re.compile("|".join(re.escape(shape) for shape in ordered))


def redact(text: str) -> str:
    """`text` with every registered secret shape replaced by ****."""
    if _pattern is None or not text:
        return text
    return _pattern.sub(MASK, text)


def redact_value(value: Any) -> Any:
    """A JSON-like value with secrets masked in every string (keys included)."""
    if _pattern is None:
        return value
    try:  # the common case, one search over the whole document: nothing to mask
        text = json.dumps(value, ensure_ascii=False, default=str)
    except (ValueError, TypeError, RecursionError):
        return _redact_each(value)
    return redact_document(value, text)


def redact_document(value: Any, text: str) -> Any:
    """`value` masked, given its JSON `text` (ensure_ascii off) already made by the caller:
    one search over the text decides whether the value must be walked at all."""
    if _pattern is None or not _pattern.search(text):
        return value
    return _redact_each(value)


def _redact_each(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact(str(k)): _redact_each(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_each(v) for v in value]
    return value


_SECRET_PARAMETERS = {"password", "sslpassword", "passfile", "sslkey"}


def describe_url(url: str) -> str:
    """The URL without its password (in the user part or in the query string), for messages."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "(unreadable database URL)"
    rest, qmark, query = rest.partition("?")
    credentials, at, host = rest.rpartition("@")
    shown = f"{scheme}://" + (f"{credentials.split(':', 1)[0]}@{host}" if at else rest)
    if qmark:
        pairs = parse_qsl(query, keep_blank_values=True)
        shown += "?" + "&".join(
            f"{k}={'****' if k.lower() in _SECRET_PARAMETERS else v}" for k, v in pairs
        )
    return shown


def url_secrets(url: str) -> list[str]:
    """The password parts of a database URL, to be masked wherever text reaches a person."""
    rest = url.partition("://")[2]
    rest, _, query = rest.partition("?")
    credentials, at, _ = rest.rpartition("@")
    found = [unquote(credentials.split(":", 1)[1])] if at and ":" in credentials else []
    found += [v for k, v in parse_qsl(query) if k.lower() in _SECRET_PARAMETERS]
    return [f for f in found if f]
