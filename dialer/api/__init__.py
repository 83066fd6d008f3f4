"""The campaign API of `dialer serve` (/api/v1), its OpenAPI description and its problems."""
