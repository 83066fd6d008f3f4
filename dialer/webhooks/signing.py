"""Standard Webhooks signatures: the three headers a receiver's library verifies.

The signed content is `{id}.{timestamp}.{body}`, its HMAC-SHA256 under the endpoint's key,
base64, as `v1,<signature>` (standardwebhooks.com; the `standardwebhooks` package verifies
these in tests/webhooks, independently of this code).
"""

from __future__ import annotations

import base64
import hashlib
import hmac


def message_id(install: str, event_id: int) -> str:
    """The same on every retry and replay of an event, so receivers can drop repeats; unique
    across databases (`install`: db.webhooks.install_id), so two installs never share one."""
    return f"msg_{install}_{event_id}"


def signed_headers(key: bytes, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    content = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, content, hashlib.sha256).digest()
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": "v1," + base64.b64encode(digest).decode(),
        "Content-Type": "application/json",
    }
