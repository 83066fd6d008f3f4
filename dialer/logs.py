"""Logging set-up: one line per event, as text or JSON, with structured fields.

Every line passes through dialer.redaction (no credential in any shape reaches a log), and
text lines escape control characters, so a value from a request (a path, a header, a status
word) can never start a forged line or repaint a terminal.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from dialer.redaction import redact

_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


def _fields(record: logging.LogRecord) -> dict:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD}


def escape_controls(text: str) -> str:
    """Control characters (newlines, escape sequences, NUL, ...) written as \\xNN / \\n."""
    return text.translate(_CONTROL_ESCAPES)


_CONTROL_ESCAPES = {
    code: repr(chr(code))[1:-1] if code not in (0x5C,) else "\\\\"
    for code in [*range(0x20), 0x7F, *range(0x80, 0xA0), 0x2028, 0x2029, 0x5C]
}


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        extras = " ".join(f"{k}={v}" for k, v in _fields(record).items())
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + self.formatException(record.exc_info)
        line = f"{when} {record.levelname.lower()} {record.name}: {message}"
        return escape_controls(redact(f"{line} {extras}".rstrip()))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        entry = {"ts": when, "level": record.levelname.lower(), "logger": record.name}
        entry |= {"msg": record.getMessage()} | _fields(record)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return redact(json.dumps(entry, default=str))


def setup(level: str = "info", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger("dialer")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
