"""How the simulated provider signs its callbacks, and a sim account checks them (kept apart
from the server, so reading dialer.toml's sim accounts needs no HTTP server)."""

from __future__ import annotations

import hashlib
import hmac


def sign(secret: str, path: str, body: bytes) -> str:
    """HMAC-SHA256 of the callback URL's path and its body, hex."""
    return hmac.new(secret.encode(), path.encode() + b"\n" + body, hashlib.sha256).hexdigest()
