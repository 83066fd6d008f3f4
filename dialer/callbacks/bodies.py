"""Turning a callback's raw body into fields: urlencoded form, multipart form, or JSON.

Parsed from the bytes already read (not from the request stream), so the same bytes serve
signature checks and storage. Providers differ: Exotel posts multipart/form-data by default,
Twilio and DIDforSale urlencoded forms, TeleCMI and the sim JSON.
"""

from __future__ import annotations

import json
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any
from urllib.parse import parse_qsl

from multidict import MultiDict


class BodyError(ValueError):
    """A body that does not parse as the content type it claims."""


def parse_body(content_type: str, body: bytes) -> tuple[MultiDict[str], Any]:
    """(form fields, JSON document) of a callback body; one of them is empty."""
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind == "application/json" or (not kind and body[:1] in (b"{", b"[")):
        try:
            return MultiDict(), json.loads(body)
        except ValueError:
            raise BodyError("body is not valid JSON") from None
    if kind == "multipart/form-data":
        return _multipart(content_type, body), None
    try:
        text = body.decode()
    except UnicodeDecodeError:
        raise BodyError("form body is not UTF-8") from None
    return MultiDict(parse_qsl(text, keep_blank_values=True)), None


def _multipart(content_type: str, body: bytes) -> MultiDict[str]:
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + body)
    if not message.is_multipart():
        raise BodyError("multipart body without parts")
    fields: MultiDict[str] = MultiDict()
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if name is None:
            continue
        payload = part.get_payload(decode=True) or b""
        fields.add(str(name), payload.decode(part.get_content_charset() or "utf-8", "replace"))
    return fields
