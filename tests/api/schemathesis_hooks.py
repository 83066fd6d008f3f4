"""Loaded by schemathesis (SCHEMATHESIS_HOOKS) in tests/api/test_openapi.py: a JSON-lines body
is sent as the text it is."""

import schemathesis

schemathesis.serializer.alias("application/x-ndjson", "text/plain")
