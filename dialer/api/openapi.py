"""The OpenAPI 3.1 description of /api/v1, served at /api/v1/openapi.json.

The campaign body's schema is CampaignSpec's own JSON Schema (pydantic), so the document and
the validation cannot drift apart; tests/api/test_openapi.py runs schemathesis against a live
server to keep the rest of it true.
"""

from __future__ import annotations

from functools import cache

from aiohttp import web

from dialer import __version__
from dialer.campaign_spec import CampaignSpec

REF = "#/components/schemas/{model}"


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict) -> dict:
    return {"content": {"application/json": {"schema": schema}}}


PROBLEM = {
    "description": "A problem document (RFC 9457)",
    "content": {"application/problem+json": {"schema": _ref("Problem")}},
}
ERRORS = {
    str(status): PROBLEM | {"description": meaning}
    for status, meaning in (
        (400, "Bad request"),
        (401, "No valid bearer token"),
        (403, "The token lacks the scope"),
        (404, "No such campaign"),
        (405, "Method not allowed"),
        (409, "The campaign's state does not allow it"),
        (413, "Body too large"),
        (415, "Unsupported body type"),
        (422, "Invalid values, each named"),
        (503, "Database unavailable; try again"),
    )
}
NAME = {
    "name": "name",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "examples": {"campaign": {"value": "api-example"}},
}
ACCOUNT = {
    "name": "account",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "examples": {"account": {"value": "sim-main"}},
}
NUMBER = {
    "name": "number",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "examples": {"number": {"value": "+919812345699"}},
}
EXAMPLE_CAMPAIGN = {
    "account": "main",
    "default_region": "IN",
    "caller_id": "+918047112233",
    "timezone": "Asia/Kolkata",
    "window": {"start": "09:00", "end": "21:00"},
}
EXAMPLE_CSV = "phone,name,crm_id\n+919812345601,Asha,1\n09812345602,Ravi,2\n"
EXAMPLE_LINES = '{"phone": "+919812345603", "name": "Meera", "crm_id": 3}\n'
EXAMPLE_NUMBERS = {"numbers": ["+919812345609"], "reason": "asked not to be called"}
EXAMPLE_CONSENTS = {
    "events": [{"phone": "+919812345609", "scope": "marketing", "action": "grant", "source": "web"}]
}
SECURED: list[dict[str, list[str]]] = [{"bearer": []}]


def _operation(summary: str, ok: dict, **extra: object) -> dict:
    return {"summary": summary, "security": SECURED, "responses": ok | ERRORS, **extra}


def _body(ref: str, example: dict) -> dict:
    return {
        "required": True,
        "content": {"application/json": {"schema": _ref(ref), "example": example}},
    }


def _schemas() -> dict:
    spec = CampaignSpec.model_json_schema(ref_template=REF)
    definitions = spec.pop("$defs", {})
    body = dict(spec)
    body["properties"] = {k: v for k, v in spec["properties"].items() if k != "contacts"}
    body["required"] = [k for k in spec.get("required", []) if k != "name"]
    body["title"] = "CampaignBody"
    counts = {"type": "integer", "minimum": 0}
    return definitions | {
        "CampaignBody": body,
        "Problem": {
            "type": "object",
            "required": ["type", "title", "status", "detail"],
            "properties": {
                "type": {"type": "string"},
                "title": {"type": "string"},
                "status": {"type": "integer"},
                "detail": {"type": "string"},
                "errors": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["field", "message"],
                        "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
                    },
                },
            },
        },
        "CampaignAction": {
            "type": "object",
            "required": ["name", "action"],
            "properties": {
                "name": {"type": "string"},
                "action": {"type": "string"},
                "message": {"type": "string"},
            },
        },
        "Summary": {"type": "object", "additionalProperties": True},
        "AccountStatus": {
            "type": "object",
            "required": ["name", "kind", "health", "channels", "live_calls"],
            "properties": {
                "name": {"type": "string"},
                "kind": {"type": "string"},
                "health": {"enum": ["sending", "held", "resting", "paused"]},
                "rate_per_s": {"type": ["number", "null"]},
                "paced_rate_per_s": {"type": ["number", "null"]},
                "channels": {"type": "integer"},
                "live_calls": {"type": "integer"},
                "paused_reason": {"type": ["string", "null"]},
                "resting_until": {"type": ["string", "null"]},
                "resting_reason": {"type": ["string", "null"]},
                "held_until": {"type": ["string", "null"]},
                "last_error": {"type": ["string", "null"]},
                "last_error_at": {"type": ["string", "null"]},
                "caller_ids_resting": {"type": "array", "items": {"type": "string"}},
            },
        },
        "AccountList": {
            "type": "object",
            "required": ["accounts"],
            "properties": {"accounts": {"type": "array", "items": _ref("AccountStatus")}},
        },
        "AccountAction": {
            "type": "object",
            "required": ["name", "action"],
            "properties": {"name": {"type": "string"}, "action": {"type": "string"}},
        },
        "Campaign": {
            "type": "object",
            "required": ["name", "account", "status", "summary"],
            "properties": {
                "name": {"type": "string"},
                "account": {"type": "string"},
                "status": {"enum": ["active", "paused", "canceled", "completed"]},
                "status_reason": {"type": ["string", "null"]},
                "summary": _ref("Summary"),
            },
        },
        "CampaignList": {
            "type": "object",
            "required": ["campaigns"],
            "properties": {"campaigns": {"type": "array", "items": _ref("Summary")}},
        },
        "LoadAnswer": {
            "type": "object",
            "required": [
                *("campaign", "rows_read", "loaded", "duplicates", "suppressed", "rejected"),
                *("rejected_rows", "rejects_by_reason", "changed"),
            ],
            "properties": {
                "campaign": {"type": "string"},
                "campaign_action": {"type": "string"},
                "rows_read": counts,
                "loaded": counts,
                "duplicates": counts,
                "suppressed": counts,
                "rejected": counts,
                "new_rejects": counts,
                "rejects_by_reason": {"type": "object", "additionalProperties": counts},
                "rejected_rows": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["row", "reason"],
                        "properties": {"row": counts, "reason": {"type": "string"}},
                    },
                },
                "rejected_rows_truncated": {"type": "boolean"},
                "changed": {"type": "boolean"},
                "reopened": {"type": "boolean"},
                "completed_because": {"type": ["string", "null"]},
            },
        },
        "Numbers": {
            "type": "object",
            "required": ["numbers"],
            "additionalProperties": False,
            "properties": {
                "numbers": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                "reason": {"type": ["string", "null"], "maxLength": 500},
                "region": {"type": ["string", "null"], "pattern": "^[A-Za-z]{2}$"},
            },
        },
        "DncAdded": {
            "type": "object",
            "required": ["added", "already_listed", "contacts_suppressed"],
            "properties": {
                "added": counts,
                "already_listed": counts,
                "contacts_suppressed": counts,
            },
        },
        "DncRemoved": {
            "type": "object",
            "required": ["removed"],
            "properties": {"removed": counts},
        },
        "Consents": {
            "type": "object",
            "required": ["events"],
            "additionalProperties": False,
            "properties": {
                "events": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": 10000,
                    "items": {
                        "type": "object",
                        "description": "phone (required), scope, action (grant or revoke),"
                        " source, evidence or evidence_sha256, occurred_at (ISO 8601)",
                        "additionalProperties": {"type": "string"},
                    },
                }
            },
        },
        "ConsentsAppended": {
            "type": "object",
            "required": ["appended", "reservations_withdrawn"],
            "properties": {"appended": counts, "reservations_withdrawn": counts},
        },
        "ContactErased": {
            "type": "object",
            "required": ["erased", "reservations_released", "rows_changed", "files", "also"],
            "properties": {
                "erased": {"type": "boolean"},
                "reservations_released": counts,
                "rows_changed": {"type": "object", "additionalProperties": counts},
                "files": {
                    "type": "array",
                    "description": "files that may still hold the number, for the operator",
                    "items": {
                        "type": "object",
                        "properties": {
                            "kind": {"type": "string"},
                            "path": {"type": "string"},
                            "host": {"type": ["string", "null"]},
                            "written_at": {"type": ["string", "null"]},
                        },
                    },
                },
                "also": {"type": "array", "items": {"type": "string"}},
            },
        },
    }


@cache
def document() -> dict:
    campaign = "/api/v1/campaigns/{name}"
    ok = lambda schema, code="200": {code: {"description": "OK"} | _json(_ref(schema))}  # noqa: E731
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "dialer campaign API",
            "version": __version__,
            "description": "Campaigns, contacts, control, results and the do-not-call list of a"
            " dialer database. Bearer tokens come from [api] tokens in dialer.toml.",
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": _schemas(),
        },
        "paths": {
            "/api/v1/campaigns": {
                "get": _operation("Every campaign with its counts", ok("CampaignList"))
            },
            campaign: {
                "parameters": [NAME],
                "get": _operation("One campaign: status and summary", ok("Campaign")),
                "put": _operation(
                    "Create the campaign, or change it while it has not dialed",
                    ok("CampaignAction") | ok("CampaignAction", "201"),
                    requestBody=_body("CampaignBody", EXAMPLE_CAMPAIGN),
                ),
            },
            campaign + "/contacts": {
                "parameters": [NAME],
                "post": _operation(
                    "Append contacts, validated as `dialer campaign load`; all or nothing",
                    ok("LoadAnswer"),
                    parameters=[
                        {
                            "name": "Idempotency-Key",
                            "in": "header",
                            "required": False,
                            "schema": {"type": "string", "pattern": "^[\\x21-\\x7e]{1,200}$"},
                        }
                    ],
                    requestBody={
                        "required": True,
                        "content": {
                            "text/csv": {"schema": {"type": "string"}, "example": EXAMPLE_CSV},
                            "application/x-ndjson": {
                                "schema": {"type": "string"},
                                "example": EXAMPLE_LINES,
                            },
                        },
                    },
                ),
            },
            **{
                f"{campaign}/{action}": {
                    "parameters": [NAME],
                    "post": _operation(f"{action.capitalize()} the campaign", ok("CampaignAction")),
                }
                for action in ("pause", "resume", "cancel")
            },
            campaign + "/results": {
                "parameters": [NAME],
                "get": _operation(
                    "The results, one row per contact, streamed",
                    {
                        "200": {
                            "description": "CSV (as dialer export) or JSON lines",
                            "headers": {
                                "Dialer-Next-Cursor": {
                                    "description": "Pass as `since` for the next sync",
                                    "schema": {"type": "string"},
                                }
                            },
                            "content": {
                                "text/csv": {"schema": {"type": "string"}},
                                "application/x-ndjson": {"schema": {"type": "string"}},
                            },
                        }
                    },
                    parameters=[
                        {
                            "name": "format",
                            "in": "query",
                            "schema": {"enum": ["csv", "jsonl"], "default": "csv"},
                        },
                        {"name": "since", "in": "query", "schema": {"type": "string"}},
                    ],
                ),
            },
            "/api/v1/dnc": {
                "post": _operation(
                    "Add numbers to the do-not-call list (waiting contacts are suppressed)",
                    ok("DncAdded"),
                    requestBody=_body("Numbers", EXAMPLE_NUMBERS),
                )
            },
            "/api/v1/dnc/remove": {
                "post": _operation(
                    "Take numbers off the do-not-call list",
                    ok("DncRemoved"),
                    requestBody=_body("Numbers", EXAMPLE_NUMBERS),
                )
            },
            "/api/v1/consents": {
                "post": _operation(
                    "Append consent grants or revocations to the ledger, all or nothing",
                    ok("ConsentsAppended"),
                    requestBody=_body("Consents", EXAMPLE_CONSENTS),
                )
            },
            "/api/v1/contacts/{number}": {
                "delete": _operation(
                    "Erase a number on request (GDPR Art. 17), keeping it do-not-call as a keyed"
                    " hash; 409 while a call to it is in flight (it is held meanwhile)",
                    ok("ContactErased"),
                    parameters=[NUMBER],
                )
            },
            "/api/v1/accounts": {
                "get": _operation(
                    "Every provider account: health, limits, live calls", ok("AccountList")
                )
            },
            "/api/v1/accounts/{account}": {
                "parameters": [ACCOUNT],
                "get": _operation(
                    "One account, with its caller ids resting today", ok("AccountStatus")
                ),
            },
            **{
                f"/api/v1/accounts/{{account}}/{action}": {
                    "parameters": [ACCOUNT],
                    "post": _operation(
                        f"{action.capitalize()} the account in every dialing process",
                        ok("AccountAction"),
                    ),
                }
                for action in ("pause", "resume")
            },
        },
    }


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(document())
