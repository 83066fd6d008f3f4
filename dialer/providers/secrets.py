"""Credentials in text and callbacks: masking every spelling of a secret, comparing tokens in
constant time, and the callback token derived from an account's secret."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from dialer.redaction import MASK, forms, redact


def mask(text: str, secrets: Sequence[str], users: Sequence[str] = ()) -> str:
    """`text` with each of `secrets`, in every shape (raw, URL- and JSON-escaped, base64 and
    Basic-auth with `users`), and every secret the process registered, replaced by ****."""
    for secret in secrets:
        if secret:
            for shape in sorted(forms(secret, users), key=len, reverse=True):
                text = text.replace(shape, MASK)
    return redact(text)


def same_secret(given: str | None, expected: str) -> bool:
    """Constant-time comparison of a secret that came from outside (any characters, even
    undecodable header bytes) with the expected one."""
    return hmac.compare_digest(
        (given or "").encode("utf-8", "surrogatepass"), expected.encode("utf-8")
    )


def derive_token(secret: str, account: str) -> str:
    """The account's callback URL token: unguessable without the account's secret, and the same
    in every process that has the configuration (nothing to store or share)."""
    message = f"dialer callback token v1:{account}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()[:32]
