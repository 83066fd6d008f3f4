"""Errors of the campaign API as RFC 9457 problem documents, naming the field or row at fault.

The one place an exception becomes an HTTP answer for /api/v1: the status comes from the
error's type (errors.http_status_of), the `errors` list from InvalidFields; anything else is a
500 whose detail says nothing of the internals (the log has them).
"""

from __future__ import annotations

import logging

from aiohttp import web

from dialer.errors import DialerError, InvalidFields, http_status_of

log = logging.getLogger("dialer.api")
PROBLEM = "application/problem+json"
TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Body too large",
    415: "Unsupported media type",
    422: "Invalid values",
    500: "Internal error",
    503: "Database unavailable",
}


def problem(status: int, detail: str, errors: list[tuple[str, str]] | None = None) -> web.Response:
    document: dict[str, object] = {
        "type": "about:blank",
        "title": TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    if errors:
        document["errors"] = [{"field": where, "message": what} for where, what in errors]
    response = web.json_response(document, status=status, content_type=PROBLEM)
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="dialer"'
    return response


def from_error(error: DialerError) -> web.Response:
    status = http_status_of(error)
    fields = error.fields if isinstance(error, InvalidFields) else None
    if status >= 500:
        log.error("api request failed", extra={"error": error.message})
        return problem(500, "the request failed; the server log says why")
    return problem(status, error.message, fields)
