"""Turning a callback's raw body into fields: urlencoded form, multipart form, or JSON.

Parsed from the bytes already read (not from the request stream), so the same bytes serve
signature checks and storage. Providers differ: Exotel posts multipart/form-data by default,
Twilio and DIDforSale urlencoded forms, TeleCMI and the sim JSON.

Whatever the bytes, the answer is fields or a BodyError, never another exception: form
fields and multipart parts are capped in number like the body in size, JSON in depth, and a
part's unknown charset is read as UTF-8.
"""

from __future__ import annotations

import codecs
import json
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any
from urllib.parse import parse_qsl

from multidict import MultiDict

from dialer.errors import BodyError

MAX_FIELDS = 1000
MAX_PARTS = 200
MAX_JSON_DEPTH = 64


def parse_body(content_type: str, body: bytes) -> tuple[MultiDict[str], Any]:
    """(form fields, JSON document) of a callback body; one of them is empty."""
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind == "application/json" or (not kind and body[:1] in (b"{", b"[")):
        if _json_depth(body) > MAX_JSON_DEPTH:
            raise BodyError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
        try:
            return MultiDict(), json.loads(body)
        except (ValueError, RecursionError):
            raise BodyError("body is not valid JSON") from None
    if kind == "multipart/form-data":
        try:
            return _multipart(content_type, body), None
        except BodyError:
            raise
        except Exception as exc:  # the email parser's many ways of failing on junk
            raise BodyError(f"unreadable multipart body ({type(exc).__name__})") from None
    try:
        text = body.decode()
    except UnicodeDecodeError:
        raise BodyError("form body is not UTF-8") from None
    try:
        pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_FIELDS)
    except ValueError:
        raise BodyError(f"form body with more than {MAX_FIELDS} fields") from None
    return MultiDict(pairs), None


def _json_depth(body: bytes) -> int:
    """How deep brackets nest in `body` (strings skipped), without parsing it: cheap, and
    refuses a 1 MiB '[[[[...' before the parser recurses into it."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > MAX_JSON_DEPTH:
                    return deepest
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


def _multipart(content_type: str, body: bytes) -> MultiDict[str]:
    boundary = _boundary(content_type)
    # Counted in the bytes before anything is parsed: a body of 19,000 tiny parts would
    # otherwise be parsed whole (seconds of the event loop) before the cap could apply.
    if body.count(b"--" + boundary) > MAX_PARTS + 1:
        raise BodyError(f"multipart body with more than {MAX_PARTS} parts")
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + body)
    if not message.is_multipart():
        raise BodyError("multipart body without parts")
    fields: MultiDict[str] = MultiDict()
    for count, part in enumerate(message.iter_parts(), 1):
        if count > MAX_PARTS:
            raise BodyError(f"multipart body with more than {MAX_PARTS} parts")
        name = part.get_param("name", header="content-disposition")
        if name is None:
            continue
        payload = part.get_payload(decode=True) or b""
        if not isinstance(payload, bytes):
            raise BodyError("multipart part that is itself multipart")
        fields.add(str(name), _decode(payload, part.get_content_charset()))
    return fields


def _boundary(content_type: str) -> bytes:
    """The multipart boundary the Content-Type names (RFC 2046: 1-70 characters)."""
    for parameter in content_type.split(";")[1:]:
        name, _, value = parameter.strip().partition("=")
        if name.strip().lower() == "boundary":
            value = value.strip().strip('"')
            if 0 < len(value) <= 70:
                try:
                    return value.encode("ascii")
                except UnicodeEncodeError:
                    break
    raise BodyError("multipart body without a valid boundary")


def _decode(payload: bytes, charset: str | None) -> str:
    """A part's text in its declared charset; an unknown or non-text charset reads as UTF-8."""
    try:
        if charset and codecs.lookup(charset)._is_text_encoding:
            return payload.decode(charset, "replace")
    except (LookupError, ValueError):
        pass
    return payload.decode("utf-8", "replace")
